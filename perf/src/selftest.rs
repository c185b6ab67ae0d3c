//! `ringcast-load selftest`: how many frames per second one client process can take in, with no real
//! server in the way. An in-process "blaster" accepts the client's connections, answers the upgrade and
//! then writes ticks for the subscribed symbol in batches (many frames per write), as fast as the
//! sockets take them. The client process is the ordinary one (`ringcast-load client`), pinned to
//! --client-cores; its report gives frames/s and CPU.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::SelftestArgs;
use crate::common::*;

pub fn main(a: &SelftestArgs) -> Result<(), String> {
    let (conns, secs, batch) = (a.conns, a.duration, a.batch);
    let cores = a.client_cores.0.clone();
    let blaster_cores = a.blaster_cores.0.clone();
    // This thread away from the blaster's core, or 200 busy writers starve it.
    let _ = pin_to(0, &cores);
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = pin_to(0, &blaster_cores);
            for s in listener.incoming() {
                let Ok(s) = s else { continue };
                let stop = stop.clone();
                let cores = blaster_cores.clone();
                std::thread::spawn(move || {
                    let _ = pin_to(0, &cores);
                    let _ = blast(s, batch, &stop);
                });
            }
        });
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args([
            "client",
            "--target",
            &addr.to_string(),
            "--conns",
            &conns.to_string(),
            "--symbols",
            "100",
            "--per-conn",
            "1",
            "--deadline",
            &format!("{}", secs + 60.0),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    pin_to(child.id() as i32, &cores).map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = |kind: &str| -> Result<Value, String> {
        for l in lines.by_ref() {
            let v: Value =
                serde_json::from_str(&l.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            if v["kind"] == kind {
                return Ok(v);
            }
        }
        Err(format!("client exited before `{kind}`"))
    };
    next("connected")?;
    std::thread::sleep(Duration::from_millis(500));
    writeln!(stdin, "reset").map_err(|e| e.to_string())?;
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    writeln!(stdin, "report selftest").map_err(|e| e.to_string())?;
    let r = next("report")?;
    if std::env::var("SELFTEST_DEBUG").is_ok() {
        eprintln!("{}", serde_json::to_string(&r["counters"]).unwrap());
        eprintln!("wall_ns {} cpu_ns {}", r["wall_ns"], r["cpu_ns"]);
    }
    let _ = t;
    let wall = r["wall_ns"].as_f64().unwrap_or(1.0) / 1e9;
    stop.store(true, Ordering::Relaxed);
    writeln!(stdin, "stop").map_err(|e| e.to_string())?;
    let _ = next("final");
    let _ = child.wait();
    let c = &r["counters"];
    let frames = c["frames"].as_u64().unwrap_or(0) as f64;
    let cpu = r["cpu_ns"].as_f64().unwrap_or(0.0) / r["wall_ns"].as_f64().unwrap_or(1.0);
    let per_core = frames / wall / cpu.max(0.01);
    println!(
        "selftest: {conns} connections, {batch} frames per server write: {:.0} frames/s received, client CPU {:.0}% → {:.2} M frames/s per client core ({:.0} ns/frame), {} reads, lost {} dup {} ooo {}",
        frames / wall,
        cpu * 100.0,
        per_core / 1e6,
        1e9 / per_core.max(1.0),
        c["reads"],
        c["lost"],
        c["duplicated"],
        c["out_of_order"]
    );
    Ok(())
}

fn blast(mut s: TcpStream, batch: usize, stop: &AtomicBool) -> std::io::Result<()> {
    // upgrade
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    while crate::ws::find(&buf, b"\r\n\r\n").is_none() {
        let n = s.read(&mut tmp)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let key = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap_or("")
        .trim()
        .to_string();
    write!(
        s,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        crate::ws::expected_accept(key.as_bytes())
    )?;
    // the subscribe frame: masked, short
    let mut f = [0u8; 2];
    s.read_exact(&mut f)?;
    let len = (f[1] & 0x7f) as usize;
    let mut rest = vec![0u8; 4 + len];
    s.read_exact(&mut rest)?;
    let mask = [rest[0], rest[1], rest[2], rest[3]];
    let name: Vec<u8> = rest[4..]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i & 3])
        .collect();
    let sym = symbol_id(name.split(|&c| c == b',').next().unwrap_or(b"")).unwrap_or(0);
    let mut seq = 0u64;
    let mut out = Vec::with_capacity(batch * 110);
    while !stop.load(Ordering::Relaxed) {
        out.clear();
        let ts = realtime_ns();
        for _ in 0..batch {
            seq += 1;
            let mut t = Vec::with_capacity(100);
            crate::tick::write_tick(&mut t, sym, seq, ts, 100);
            out.push(0x81);
            out.push(t.len() as u8);
            out.extend_from_slice(&t);
        }
        s.write_all(&out)?;
    }
    Ok(())
}
