//! The ticker end to end: a real `redis-server`, the real `ringcast serve` binary with several workers,
//! and real WebSocket clients (tungstenite). Every wait is bounded; everything started is stopped.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, redis_con, retire, start_redis};
use ringcast::cli::redis_server::RedisServer;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket, connect};

type Client = WebSocket<MaybeTlsStream<TcpStream>>;

const PREFIX: &str = "t:";

/// HSET the latest value and PUBLISH the message, as `ringcast publish` does.
fn publish(con: &mut redis::Connection, ticks: &[&str]) {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for t in ticks {
        let v: serde_json::Value = serde_json::from_str(t).unwrap();
        pipe.hset(format!("{PREFIX}ticks"), v["symbol"].as_str().unwrap(), *t)
            .ignore();
    }
    let message = if ticks.len() == 1 {
        ticks[0].to_string()
    } else {
        format!("[{}]", ticks.join(","))
    };
    pipe.publish(format!("{PREFIX}ticks"), message).ignore();
    let () = pipe.query(con).unwrap();
}

fn server(redis: &RedisServer, workers: &str) -> Server {
    Server::start(&[
        "--workers",
        workers,
        "--redis",
        &redis.url(),
        "--prefix",
        PREFIX,
    ])
}

fn client(server: &Server) -> Client {
    let (ws, _) = connect(server.url()).expect("upgrade");
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    ws
}

/// Next text message (skipping pings/pongs).
fn next_text(ws: &mut Client) -> String {
    loop {
        match ws.read().expect("a message within 5 s") {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn next_json(ws: &mut Client) -> serde_json::Value {
    serde_json::from_str(&next_text(ws)).unwrap()
}

#[test]
fn snapshot_then_live_ticks_byte_for_byte_in_order_on_every_worker() {
    let redis = start_redis();
    let mut con = redis_con(&redis.url());
    let efert0 = r#"{"symbol":"EFERT","open":"50.10","close":"60.10","low":"48.50","high":"48.00","price":"55.00"}"#;
    publish(&mut con, &[efert0]);
    let server = server(&redis, "2");
    server.wait_feed_up();

    // Clients spread over both workers, half in the seed's plain form, half in JSON.
    let mut clients: Vec<Client> = (0..16).map(|_| client(&server)).collect();
    for (i, ws) in clients.iter_mut().enumerate() {
        let cmd = if i % 2 == 0 {
            "EFERT,LUCK".to_string()
        } else {
            r#"{"op":"subscribe","symbols":["EFERT","LUCK"]}"#.into()
        };
        ws.send(Message::text(cmd)).unwrap();
        let ack = next_json(ws);
        assert_eq!(ack["type"], "subscribed");
        assert_eq!(
            ack["unknown"],
            serde_json::json!(["LUCK"]),
            "LUCK has no data yet"
        );
        assert_eq!(
            next_text(ws),
            efert0,
            "snapshot first, exactly as published"
        );
    }
    assert!(
        server
            .metric_per_worker("ringcast_connections_open")
            .iter()
            .all(|&n| n > 0.0)
    );

    // Live ticks: single objects and an array message, with extra fields carried through untouched.
    let ticks: Vec<String> = (1..=20)
        .map(|i| {
            format!(
                r#"{{"symbol":"{}","price":"{i}.00","seq":{i},"note":"x y"}}"#,
                if i % 3 == 0 { "LUCK" } else { "EFERT" }
            )
        })
        .collect();
    for t in &ticks[..10] {
        publish(&mut con, &[t]);
    }
    let refs: Vec<&str> = ticks[10..].iter().map(String::as_str).collect();
    publish(&mut con, &refs);
    let bad_before = server.metric("ringcast_feed_bad_ticks_total");
    let _: () = redis::cmd("PUBLISH")
        .arg(format!("{PREFIX}ticks"))
        .arg("not json")
        .query(&mut con)
        .unwrap();
    for ws in &mut clients {
        for t in &ticks {
            assert_eq!(&next_text(ws), t);
        }
    }
    // Encoded once per process: one frame per tick, whatever the number of workers and clients.
    assert_eq!(server.metric("ringcast_feed_frames_built_total"), 21.0);
    assert_eq!(server.metric("ringcast_deliveries_total"), 16.0 * 21.0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.metric("ringcast_feed_bad_ticks_total") <= bad_before {
        assert!(Instant::now() < deadline, "bad tick not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unsubscribe_bad_messages_and_retire() {
    let redis = start_redis();
    let mut con = redis_con(&redis.url());
    let server = server(&redis, "1");
    server.wait_feed_up();
    let mut ws = client(&server);

    // A bad subscribe gets an error and the connection stays.
    ws.send(Message::text("EFERT,,bad'symbol")).unwrap();
    let err = next_json(&mut ws);
    assert_eq!(
        (err["type"].as_str(), err["error"].as_str()),
        (Some("error"), Some("bad_symbol"))
    );
    ws.send(Message::text(r#"{"op":"buy","symbols":["X"]}"#))
        .unwrap();
    assert_eq!(next_json(&mut ws)["error"], "bad_request");

    ws.send(Message::text("HASCOL,LUCK")).unwrap();
    assert_eq!(next_json(&mut ws)["type"], "subscribed");
    ws.send(Message::text("HASCOL")).unwrap();
    assert_eq!(
        next_json(&mut ws)["type"],
        "subscribed",
        "subscribing twice is harmless"
    );
    publish(&mut con, &[r#"{"symbol":"HASCOL","price":"1"}"#]);
    assert_eq!(next_text(&mut ws), r#"{"symbol":"HASCOL","price":"1"}"#);

    ws.send(Message::text(
        r#"{"op":"unsubscribe","symbols":["HASCOL"]}"#,
    ))
    .unwrap();
    assert_eq!(next_json(&mut ws)["type"], "unsubscribed");
    publish(&mut con, &[r#"{"symbol":"HASCOL","price":"2"}"#]);
    publish(&mut con, &[r#"{"symbol":"LUCK","price":"3"}"#]);
    assert_eq!(
        next_text(&mut ws),
        r#"{"symbol":"LUCK","price":"3"}"#,
        "no HASCOL after unsubscribe"
    );

    // Retire: subscribers are told, the symbol is gone from Redis.
    retire(&redis.url(), PREFIX, "LUCK");
    let msg = next_json(&mut ws);
    assert_eq!(
        (msg["type"].as_str(), msg["symbol"].as_str()),
        (Some("retired"), Some("LUCK"))
    );
}

#[test]
fn redis_outage_clients_stay_and_converge() {
    let redis_port = RedisServer::free_port().unwrap();
    let redis1 = RedisServer::start(redis_port).unwrap();
    let url = redis1.url();
    let mut con = redis_con(&url);
    publish(&mut con, &[r#"{"symbol":"OGDC","price":"100"}"#]);
    let server = server(&redis1, "2");
    server.wait_feed_up();
    let mut clients: Vec<Client> = (0..4).map(|_| client(&server)).collect();
    for ws in &mut clients {
        ws.send(Message::text("OGDC")).unwrap();
        assert_eq!(next_json(ws)["type"], "subscribed");
        assert_eq!(next_text(ws), r#"{"symbol":"OGDC","price":"100"}"#);
    }
    drop(con);
    redis1.kill();
    for ws in &mut clients {
        let status = next_json(ws);
        assert_eq!(
            (status["type"].as_str(), status["status"].as_str()),
            (Some("feed"), Some("down"))
        );
    }
    // Redis comes back (empty, as after a crash without persistence) and the publisher writes new values
    // while the servers are still reconnecting: clients converge to them.
    let redis2 = RedisServer::start(redis_port).unwrap();
    let mut con = redis_con(&redis2.url());
    let _: () = redis::cmd("HSET")
        .arg(format!("{PREFIX}ticks"))
        .arg("OGDC")
        .arg(r#"{"symbol":"OGDC","price":"101"}"#)
        .query(&mut con)
        .unwrap();
    for ws in &mut clients {
        let status = next_json(ws);
        assert_eq!(
            (status["type"].as_str(), status["status"].as_str()),
            (Some("feed"), Some("up"))
        );
        assert_eq!(
            next_text(ws),
            r#"{"symbol":"OGDC","price":"101"}"#,
            "the value missed during the outage"
        );
    }
    publish(&mut con, &[r#"{"symbol":"OGDC","price":"102"}"#]);
    for ws in &mut clients {
        assert_eq!(next_text(ws), r#"{"symbol":"OGDC","price":"102"}"#);
    }
}
