//! The dashboard in a real browser: Debian's headless `chromium`, driven through its
//! DevTools protocol (chromiumoxide). A cluster of real workers runs a map with a
//! failing item while one worker is killed; the page, opened before the work starts,
//! must show what a person would see — every worker with its state, the killed one
//! dead, the map at 100 %, the error — and a screenshot is saved as
//! `target/dashboard-browser.png` (also at `$COHORT_DASHBOARD_SCREENSHOT` if set).
//!
//! Under CI (`CI=true`) a missing chromium fails the test; elsewhere it says so and
//! passes without running (install it with `apt-get install chromium`).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::ScreenshotParams;
use cohort::pool::{blocking::pmap_with, BatchSize, PmapOptions};
use cohort::CallError;
use futures::StreamExt;
use serde::Deserialize;

use common::*;

/// The browser: `$CHROME`, else the first of Debian's and others' names on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROME") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// What the page shows, read from its DOM.
#[derive(Debug, Deserialize)]
struct Seen {
    live: bool,
    rows: Vec<Row>,
    maps: Vec<Map>,
    errors: Vec<String>,
    tasks: usize,
}

#[derive(Debug, Deserialize)]
struct Row {
    pid: u32,
    state: String,
    text: String,
}

#[derive(Debug, Deserialize)]
struct Map {
    pct: String,
    text: String,
    finished: bool,
}

const READ_DOM: &str = r##"(() => ({
  live: document.getElementById("conn").textContent === "live",
  rows: [...document.querySelectorAll("#workers tbody tr")].map((r) => ({
    pid: Number(r.dataset.pid), state: r.dataset.state,
    text: r.querySelector(".state").textContent })),
  maps: [...document.querySelectorAll("#progress .map")].map((m) => ({
    pct: m.dataset.pct, text: m.querySelector(".pct").textContent,
    finished: m.classList.contains("finished") })),
  errors: [...document.querySelectorAll("#errors li")].map((e) => e.textContent),
  tasks: document.querySelectorAll("#timeline rect").length,
}))()"##;

#[test]
fn the_page_shows_workers_progress_and_errors() {
    let Some(exe) = chromium() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("chromium is not installed, and CI=true: .ci/run installs it (apt-get install chromium)");
        }
        println!(
            "SKIPPED: no chromium on PATH (apt-get install chromium); under CI=true this fails"
        );
        return;
    };
    let w = cohort::blocking::addprocs(3).unwrap();
    let d = cohort::dashboard::Options::new("127.0.0.1:0")
        .interval(Duration::from_millis(200))
        .serve()
        .unwrap();
    let addr = d.addr();
    let url = d.url().to_string();
    let victim = w[2];

    let profile = std::env::temp_dir().join(format!("cohort-chromium-{}", std::process::id()));
    let config = BrowserConfig::builder()
        .chrome_executable(&exe)
        .no_sandbox()
        .new_headless_mode()
        .window_size(1200, 900)
        .viewport(Viewport {
            width: 1200,
            height: 900,
            ..Viewport::default()
        })
        .user_data_dir(&profile)
        .launch_timeout(Duration::from_secs(60))
        .request_timeout(Duration::from_secs(60))
        .arg("--disable-gpu")
        .arg("--disable-dev-shm-usage")
        .build()
        .expect("a browser configuration");

    let (mut browser, page) = cohort::runtime::block_on(async move {
        let (browser, mut handler) = Browser::launch(config).await.expect("start chromium");
        tokio::spawn(async move { while handler.next().await.is_some() {} });
        let page = browser.new_page(url.as_str()).await.expect("open the page");
        (browser, page)
    });
    let read = |page: &chromiumoxide::Page| -> Seen {
        let page = page.clone();
        cohort::runtime::block_on(async move {
            page.evaluate(READ_DOM)
                .await
                .expect("evaluate in the page")
                .into_value()
                .expect("the DOM as JSON")
        })
    };
    let wait_dom = |what: &str, ok: &dyn Fn(&Seen) -> bool| -> Seen {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let seen = read(&page);
            if ok(&seen) {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what}: {seen:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // The page is live and lists the three workers, idle.
    wait_dom("three idle workers", &|s| {
        s.live && s.rows.len() == 3 && s.rows.iter().all(|r| r.state == "idle")
    });

    // A map with a failing item; a worker killed once the map is under way (seen
    // through the status API, not by sleeping). Items on the dead worker are retried.
    let mapper = std::thread::spawn(|| {
        pmap_with(
            square_or_fail,
            0..120,
            PmapOptions::new()
                .batch_size(BatchSize::Fixed(1))
                .retry_delays(vec![Duration::from_millis(10); 3])
                .retry_check(|e| matches!(e, CallError::WorkerExited { .. }))
                .on_error(|_| 0),
        )
    });
    wait_for(addr, 60, "the map under way", |s| {
        s.progress.iter().any(|p| p.label == "pmap" && p.done >= 20)
    });
    kill_worker(victim);
    let v = mapper.join().unwrap().expect("the map completes");
    assert_eq!(v.len(), 120);
    assert_eq!(v[BAD_ITEM as usize], 0);

    let seen = wait_dom("the dead worker, the map at 100 % and the error", &|s| {
        s.rows.len() == 3
            && s.rows
                .iter()
                .any(|r| r.pid == victim && r.state == "dead" && r.text.starts_with("dead"))
            && s.rows
                .iter()
                .filter(|r| r.pid != victim)
                .all(|r| r.state == "idle")
            && s.maps
                .first()
                .is_some_and(|m| m.finished && m.pct == "100" && m.text == "100 %")
            && s.errors.iter().any(|e| e.contains(BAD_MESSAGE))
            && s.tasks > 0
    });
    println!("the page showed: {seen:#?}");

    let png = cohort::runtime::block_on({
        let page = page.clone();
        async move {
            page.screenshot(ScreenshotParams::builder().full_page(true).build())
                .await
                .expect("a screenshot")
        }
    });
    assert!(png.starts_with(b"\x89PNG"));
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("dashboard-browser.png"), &png).unwrap();
    if let Some(p) = std::env::var_os("COHORT_DASHBOARD_SCREENSHOT") {
        std::fs::write(p, &png).unwrap();
    }
    cohort::runtime::block_on(async move {
        let _ = browser.close().await;
        let _ = browser.wait().await;
    });
    let _ = std::fs::remove_dir_all(&profile);
    d.stop();
}
