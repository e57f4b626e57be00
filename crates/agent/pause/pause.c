/*
 * The process of a pod's sandbox container: it holds the pod's namespaces open, reaps any
 * orphan that ends up as its child (it is PID 1 of the pod's PID namespace when the pod
 * shares one), and exits at SIGINT or SIGTERM. Built statically by the agent crate's build.rs
 * and put into the locally built sandbox image, so that no registry is needed to run a pod.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        static const char v[] = "rudder pause\n";
        return write(1, v, sizeof v - 1) == (ssize_t)(sizeof v - 1) ? 0 : 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = stop;
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
        return 1;
    }
    sa.sa_handler = reap;
    sa.sa_flags = SA_NOCLDSTOP;
    if (sigaction(SIGCHLD, &sa, NULL) < 0) {
        return 2;
    }
    for (;;) {
        pause();
    }
}
