//! Service address repair with several Rudder servers on one etcd: a server starting up (and
//! repairing) never gives back an address another server has just taken for a service it is
//! about to write, and services created through both servers while a third one starts never
//! share an address.

use std::path::Path;

use bytes::Bytes;
use rudder_store::etcd::EtcdStore;
use rudder_store::{KeyRange, Store};
use rudder_testkit::{EtcdProcess, RudderServer};

fn server(endpoint: &str) -> RudderServer {
    RudderServer::api_only(
        Path::new(env!("CARGO_BIN_EXE_rudder")),
        &["--datastore-endpoint", endpoint],
    )
    .expect("start rudder server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_servers_do_not_free_addresses_others_just_took() {
    let etcd = EtcdProcess::start().expect("etcd");
    let ep = etcd.endpoint();
    let a = server(&ep);
    let b = server(&ep);
    let store = EtcdStore::connect(std::slice::from_ref(&ep))
        .await
        .expect("etcd client");

    // What server B's allocator has done halfway through creating service `pending`: the
    // address is taken, the service not yet written.
    let key = Bytes::from_static(b"/registry/ranges/serviceips/10.43.7.7");
    let owner = Bytes::from_static(br#"{"name":"pending","namespace":"default"}"#);
    store
        .create(key.clone(), owner.clone())
        .await
        .expect("take the address");
    let port_key = Bytes::from_static(b"/registry/ranges/servicenodeports/31777");
    store
        .create(port_key.clone(), owner.clone())
        .await
        .expect("take the port");

    // A server starting now repairs: the half-made allocation is not its to free.
    drop(a);
    let c = server(&ep);
    for k in [&key, &port_key] {
        let kv = store.get(k.clone(), 0).await.expect("get");
        assert_eq!(
            kv.map(|kv| kv.value),
            Some(owner.clone()),
            "{k:?} was given back by a starting server"
        );
    }
    // B finishes its create: the address is the service's.
    let manifest = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"pending","namespace":"default"},
        "spec":{"type":"NodePort","clusterIP":"10.43.7.7","ports":[{"port":80,"nodePort":31777}]}}"#;
    b.kubectl_stdin(&["create", "-f", "-"], manifest).ok();
    let ip = c
        .kubectl(&[
            "get",
            "service",
            "pending",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .ok();
    assert_eq!(ip.trim(), "10.43.7.7");

    // Services made through both servers while another one starts (and repairs) never share
    // an address, and every address they hold stays taken.
    let names: Vec<String> = (0..16).map(|i| format!("svc-{i:02}")).collect();
    let starting = std::thread::spawn({
        let ep = ep.clone();
        move || server(&ep)
    });
    for (i, name) in names.iter().enumerate() {
        let via = if i % 2 == 0 { &b } else { &c };
        via.kubectl(&["create", "service", "clusterip", name, "--tcp=80:80"])
            .ok();
    }
    let d = starting.join().expect("start a third server");
    let out = d
        .kubectl(&[
            "get",
            "services",
            "--all-namespaces",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.clusterIP}{\"\\n\"}{end}",
        ])
        .ok();
    let mut ips: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, ip)| ip))
        .collect();
    // With `kubernetes`, `pending` and kube-system's `kube-dns`.
    assert_eq!(ips.len(), names.len() + 3, "{out}");
    ips.sort_unstable();
    let before = ips.len();
    ips.dedup();
    assert_eq!(ips.len(), before, "two services share an address: {out}");
    let taken = store
        .range(rudder_store::RangeRequest::new(KeyRange::prefix(
            "/registry/ranges/serviceips/",
        )))
        .await
        .expect("range");
    let mut keys: Vec<String> = taken
        .kvs
        .iter()
        .map(|kv| {
            String::from_utf8_lossy(&kv.key)
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    keys.sort();
    assert_eq!(keys, ips, "every held address is taken, no more");
}
