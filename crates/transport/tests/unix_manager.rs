//! `UnixManager` against real worker processes: this test binary is the worker
//! program, running only the ignored `echo_worker_entry` helper, which follows the
//! manager's protocol (socket path from the environment, cookie on stdin, ready
//! line on stdout) and echoes bytes instead of speaking the cohort protocol.

use std::time::Duration;

use cohort_transport::stream::{unix_accept, unix_listen};
use cohort_transport::unix::{announce, socket_from_env};
use cohort_transport::{ClusterManager, LaunchError, LaunchParams, UnixManager};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The worker program (ignored unless run by the test below, with the socket set).
#[test]
#[ignore]
fn echo_worker_entry() {
    let Some(socket) = socket_from_env() else {
        return;
    };
    let cookie = cohort_transport::listen::read_cookie_from_stdin().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = unix_listen(&socket).unwrap();
        announce(&socket).unwrap();
        // One connection: greet with the cookie's length, then echo until EOF.
        let mut conn = unix_accept(&listener).await.unwrap();
        conn.writer.write_all(&[cookie.len() as u8]).await.unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let n = conn.reader.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            conn.writer.write_all(&buf[..n]).await.unwrap();
        }
    });
}

fn manager(dir: &std::path::Path) -> UnixManager {
    UnixManager::new(dir)
        .executable(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "echo_worker_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .ready_timeout(Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_workers_and_connects_over_their_sockets() {
    let dir = std::env::temp_dir().join(format!("cohort-um-{}", std::process::id()));
    let m = manager(&dir);
    let params = LaunchParams {
        count: 2,
        cookie: "cookie-of-17-char".into(),
        ..Default::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    m.launch(&params, tx).await.unwrap();
    let mut configs = Vec::new();
    while let Some(c) = rx.recv().await {
        configs.push(c);
    }
    assert_eq!(configs.len(), 2);
    for (i, c) in configs.iter().enumerate() {
        let mut conn = m.connect(2 + i as u32, c).await.unwrap();
        let mut hello = [0u8; 1];
        conn.reader.read_exact(&mut hello).await.unwrap();
        assert_eq!(
            hello[0] as usize,
            params.cookie.len(),
            "cookie came on stdin"
        );
        let msg = format!("hello worker {i}");
        conn.writer.write_all(msg.as_bytes()).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        conn.reader.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg.as_bytes());
        drop(conn); // EOF: the worker exits
        m.kill(2 + i as u32, c).await;
    }
    // Every socket file is gone.
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_worker_that_never_gets_ready_is_a_typed_error() {
    let dir = std::env::temp_dir().join(format!("cohort-um-bad-{}", std::process::id()));
    // Reads its stdin (the cookie), then exits without a ready line.
    let m = UnixManager::new(&dir)
        .executable("sh")
        .args(["-c", "cat > /dev/null"]);
    let params = LaunchParams {
        count: 1,
        ..Default::default()
    };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let e = m.launch(&params, tx).await.unwrap_err();
    assert!(
        matches!(
            e,
            LaunchError::Announce {
                cause: cohort_transport::AnnounceFailure::Exited,
                ..
            }
        ),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
