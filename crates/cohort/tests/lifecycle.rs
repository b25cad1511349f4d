//! Adding, removing and losing workers, over real processes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cohort::prelude::*;
use cohort::CallError;

#[cohort::remote]
fn os_pid() -> u32 {
    std::process::id()
}

#[cohort::remote]
fn slow(secs: f64) -> u8 {
    std::thread::sleep(Duration::from_secs_f64(secs));
    1
}

/// Works until interrupted (or `secs` pass), polling the interrupt flag.
#[cohort::remote]
fn patient(secs: f64) -> String {
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        if cohort::interrupted() {
            return "stopped early".into();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    "finished".into()
}

#[test]
fn interrupt_cancels_running_calls_and_the_worker_goes_on() {
    let pids = blocking::addprocs(1).unwrap();
    let w = pids[0];
    let in_flight = std::thread::spawn(move || blocking::remotecall_fetch(patient, w, (30.0,)));
    let stored = remotecall(patient, w, (30.0,));
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    cohort::interrupt(&[w]).unwrap();
    match in_flight.join().unwrap() {
        Err(CallError::Remote(e)) => {
            assert_eq!(e.kind, cohort::ErrorKind::Interrupted);
            assert_eq!(e.pid, w);
        }
        other => panic!("expected an interrupted call, got {other:?}"),
    }
    assert!(
        matches!(stored.fetch_blocking(), Err(CallError::Remote(e)) if e.kind == cohort::ErrorKind::Interrupted)
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    // The worker serves the next call normally.
    assert_eq!(
        blocking::remotecall_fetch(patient, w, (0.0,)).unwrap(),
        "finished"
    );
    let _ = cohort::blocking::rmprocs(&pids, None);
}

#[cohort::remote]
fn identity(v: Vec<u8>) -> Vec<u8> {
    v
}

#[test]
fn killed_worker_fails_its_calls_by_name_and_the_rest_go_on() {
    let pids = blocking::addprocs(2).unwrap();
    let (victim, other) = (pids[0], pids[1]);
    let os = blocking::remotecall_fetch(os_pid, victim, ()).unwrap();
    let pending = remotecall(slow, victim, (30.0,));
    let in_flight = std::thread::spawn(move || blocking::remotecall_fetch(slow, victim, (30.0,)));
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill")
        .arg("-9")
        .arg(os.to_string())
        .status()
        .unwrap();
    let err = in_flight.join().unwrap().unwrap_err();
    assert!(
        matches!(err, CallError::WorkerExited { pid, .. } if pid == victim),
        "{err:?}"
    );
    assert!(err.to_string().contains(&format!("worker {victim}")));
    assert!(
        matches!(pending.fetch_blocking(), Err(CallError::WorkerExited { pid, .. }) if pid == victim)
    );
    // The other worker is unaffected.
    assert_eq!(blocking::remotecall_fetch(slow, other, (0.0,)).unwrap(), 1);
    let _ = cohort::blocking::rmprocs(&pids, Some(Duration::from_secs(10)));
}

#[test]
fn rmprocs_removes_workers_and_their_processes_exit() {
    let pids = blocking::addprocs(2).unwrap();
    let os: Vec<u32> = pids
        .iter()
        .map(|p| blocking::remotecall_fetch(os_pid, *p, ()).unwrap())
        .collect();
    let task = cohort::rmprocs_nowait(&pids[..1]).unwrap();
    assert!(!cohort::workers().contains(&pids[0]));
    task.wait_blocking();
    assert!(!std::path::Path::new(&format!("/proc/{}", os[0])).exists());
    let st = cohort::blocking::rmprocs(&pids[1..], Some(Duration::from_secs(10))).unwrap();
    assert_eq!(st, cohort::RmStatus::Ok);
    assert!(!std::path::Path::new(&format!("/proc/{}", os[1])).exists());
    assert!(matches!(
        blocking::remotecall_fetch(os_pid, pids[1], ()),
        Err(CallError::NoSuchProcess { .. } | CallError::WorkerExited { .. })
    ));
    assert!(matches!(
        cohort::blocking::rmprocs(&[999], None),
        Err(cohort::ClusterError::NotAWorker(999))
    ));
}

#[test]
fn a_call_to_self_works_on_the_same_values() {
    let v = vec![1u8, 2, 3];
    let ptr = v.as_ptr();
    let back = blocking::remotecall_fetch(identity, myid(), (v,)).unwrap();
    assert_eq!(
        back.as_ptr(),
        ptr,
        "a local call must not copy its arguments"
    );
    let pids = blocking::addprocs(1).unwrap();
    let v = vec![1u8, 2, 3];
    // A copy is sent and `v` kept: the arguments are dropped once encoded, so the
    // result could be allocated where the argument was, had it been `v` itself.
    let back = blocking::remotecall_fetch(identity, pids[0], (v.clone(),)).unwrap();
    assert_eq!(back, v);
    assert_ne!(back.as_ptr(), v.as_ptr(), "a remote call works on a copy");
    let _ = cohort::blocking::rmprocs(&pids, None);
}

/// A worker nobody connects to exits after COHORT_WORKER_TIMEOUT.
#[test]
fn unconnected_worker_times_out() {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--cohort-worker", "--bind-to", "127.0.0.1"])
        .env("COHORT_WORKER_TIMEOUT", "0.5")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "some-cookie").unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("cohort_worker:"), "{line}");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "worker did not time out"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
}

/// Garbage and a wrong cookie on a worker's port are refused; the worker survives and
/// still joins its real master.
#[test]
fn bad_input_on_a_worker_socket_is_refused_and_the_worker_survives() {
    use std::net::TcpStream;
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--cohort-worker", "--bind-to", "127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "right-cookie").unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let (host, port) = cohort::transport::listen::parse_announcement(&line).unwrap();
    // Garbage, including a frame header claiming 4 GiB.
    let mut s = TcpStream::connect((host.as_str(), port)).unwrap();
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 4096];
    // The worker sends its hello, then closes on the garbage.
    let mut total = 0;
    loop {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => panic!("worker did not close the connection: {e}"),
        }
    }
    assert!(total > 0);
    // It says why it closed the connection (on stderr, which a manager forwards).
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut log = Vec::new();
    while !log
        .iter()
        .any(|l: &String| l.contains("refused a connection"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(_) => panic!("no log line about the refused connection: {log:?}"),
        }
    }
    // Still alive.
    assert!(child.try_wait().unwrap().is_none());
    let _ = child.kill();
    let _ = child.wait();
}
