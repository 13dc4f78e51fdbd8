//! Sessions pooled with steward-pool, keyed by URL (feature `pool`).

use steward_pool::{KeyedPool, Pool, Pooled};
use steward_ws::pool::{ClientManager, SessionManager};
use steward_ws::{ClientConfig, Message};

use crate::common::*;

#[tokio::test]
async fn sessions_are_pooled_by_url_and_reused() {
    let a = PyPeer::start(&["echo"], 0).await;
    let b = rust_server(echo).await;
    let pool = KeyedPool::builder(SessionManager::new(ClientConfig::default()))
        .build()
        .unwrap();
    let url_a = a.url();
    {
        let session = pool.get(&url_a).await.unwrap();
        roundtrip(&session, Message::text("to a")).await;
    }
    {
        let session = pool.get(&b).await.unwrap();
        roundtrip(&session, Message::text("to b")).await;
    }
    // Back in the pool: the same session (its counters continue) is reused.
    let again = pool.get(&url_a).await.unwrap();
    assert_eq!(again.stats().messages_sent, 1);
    roundtrip(&again, Message::text("to a again")).await;
    assert_eq!(again.stats().messages_sent, 2);
    assert_eq!(pool.keys(), 2);
}

#[tokio::test]
async fn a_dead_pooled_session_is_replaced() {
    let peer = PyPeer::start(&["echo"], 0).await;
    let port = peer.port;
    let client = builder(&peer.url()).no_reconnect().build().unwrap();
    let pool = Pool::builder(ClientManager::new(client))
        .max_size(1)
        .build()
        .unwrap();
    let first = pool.get().await.unwrap();
    roundtrip(&first, Message::text("one")).await;
    let events = first.events();
    drop(first);
    peer.kill().await;
    // Wait until the pooled session has seen its link die.
    loop {
        if let steward_ws::Event::Closed = next_event(&events).await {
            break;
        }
    }
    let _second_server = PyPeer::start(&["echo"], port).await;
    let fresh = pool.get().await.unwrap();
    assert_eq!(
        fresh.stats().messages_sent,
        0,
        "a new session, not the dead one"
    );
    roundtrip(&fresh, Message::text("two")).await;
    let taken = Pooled::take(fresh);
    assert!(taken.is_connected());
}
