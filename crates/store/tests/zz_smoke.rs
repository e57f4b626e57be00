use bytes::Bytes;
use rudder_store::embedded::*;
use rudder_store::*;
#[tokio::test]
async fn smoke() {
    let d = tempfile::tempdir().unwrap();
    let mut o = EmbeddedOptions::new(d.path());
    o.segment_size = 64 << 10;
    let s = Embedded::open(o.clone()).unwrap();
    let kv = s.create(Bytes::from("/a"), Bytes::from("1")).await.unwrap();
    assert_eq!(kv.mod_revision, 1);
    let mut w = s
        .watch(WatchRequest::new(KeyRange::prefix(Bytes::from("/")), 1))
        .await
        .unwrap();
    let kv2 = s
        .update(Bytes::from("/a"), Bytes::from("2"), 1)
        .await
        .unwrap();
    assert_eq!(kv2.version, 2);
    assert!(matches!(
        s.update(Bytes::from("/a"), Bytes::from("3"), 1).await,
        Err(StoreError::Conflict { .. })
    ));
    for i in 0..2000 {
        s.put(
            Bytes::from(format!("/k/{i:05}")),
            Bytes::from(vec![7u8; 100]),
        )
        .await
        .unwrap();
    }
    let r = s
        .range(RangeRequest::new(KeyRange::prefix(Bytes::from("/k/"))).limit(10))
        .await
        .unwrap();
    assert_eq!(r.count, 2000);
    assert!(r.more);
    assert_eq!(r.kvs.len(), 10);
    let m = w.next().await.unwrap().unwrap();
    println!("{m:?}");
    let old = s.get(Bytes::from("/a"), 1).await.unwrap().unwrap();
    assert_eq!(&old.value[..], b"1");
    s.compact(1500).await.unwrap();
    let before = s.disk_bytes();
    s.checkpoint().await.unwrap();
    println!("disk {before} -> {}", s.disk_bytes());
    let rev = s.current_revision().await.unwrap();
    drop(s);
    let s = Embedded::open(o).unwrap();
    assert_eq!(s.current_revision().await.unwrap(), rev);
    assert_eq!(
        s.count(KeyRange::prefix(Bytes::from("/k/"))).await.unwrap(),
        2000
    );
    let a = s.get(Bytes::from("/a"), 0).await.unwrap().unwrap();
    assert_eq!(&a.value[..], b"2");
    let r = s
        .range(RangeRequest::new(KeyRange::prefix(Bytes::from("/k/"))).at(1600))
        .await
        .unwrap();
    assert_eq!(r.count, 1598);
    assert!(matches!(
        s.get(Bytes::from("/a"), 1).await,
        Err(StoreError::Compacted { .. })
    ));
    println!("ok");
}
