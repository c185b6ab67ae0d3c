//! The server with a reference client (tungstenite) over real sockets: upgrade, echo, ping/pong, the close
//! handshake, large messages, and connections spread over every worker.

mod common;

use std::time::Duration;

use common::*;
use tungstenite::{Message, connect, protocol::CloseFrame, protocol::frame::coding::CloseCode};

#[test]
fn echo_ping_and_close_with_a_reference_client() {
    let server = Server::start(&["--workers", "2", "--echo"]);
    let (mut ws, resp) = connect(server.url()).expect("upgrade");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("EFERT,LUCK")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("EFERT,LUCK"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![0u8, 1, 2, 255]));
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::Pong(b"are you there".to_vec().into())
    );
    let big = "x".repeat(512 * 1024);
    ws.send(Message::text(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text(big));
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(frame.code, CloseCode::Normal);
            }
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unclean close: {e}"),
        }
    }
}

#[test]
fn connections_are_accepted_on_every_worker() {
    let server = Server::start(&["--workers", "2", "--echo"]);
    let conns: Vec<_> = (0..64)
        .map(|_| connect(server.url()).expect("upgrade").0)
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let open = server.metric_per_worker("ringcast_connections_open");
        // 64 connections plus the /metrics request itself.
        if open.iter().sum::<f64>() >= 64.0 {
            assert_eq!(open.len(), 2);
            assert!(
                open.iter().all(|&n| n > 0.0),
                "every worker accepts connections: {open:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "connections not all counted: {open:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(conns);
}
