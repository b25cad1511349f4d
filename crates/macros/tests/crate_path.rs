//! `#[remote(crate = …)]` and `#[main(crate = …)]` naming `cohort_cluster`, in a crate
//! that does not depend on the `cohort` facade.

#[cohort_macros::remote(crate = cohort_cluster)]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[cohort_macros::remote(crate = "cohort_cluster")]
fn greet(name: String) -> String {
    format!("hello {name}")
}

mod nested {
    #[cohort_macros::remote(crate = ::cohort_cluster)]
    pub(crate) fn twice(x: u32) -> u32 {
        2 * x
    }
}

#[cohort_macros::main(crate = cohort_cluster)]
fn sync_entry() -> u32 {
    7
}

#[cohort_macros::main(crate = "cohort_cluster")]
async fn async_entry() -> u32 {
    async { 5 }.await
}

#[test]
fn remote_functions_register_under_their_module_paths() {
    let names = cohort_cluster::registry::registered_names();
    for n in [
        "crate_path::add",
        "crate_path::greet",
        "crate_path::nested::twice",
    ] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
}

#[test]
fn remote_functions_run_when_called() {
    let me = cohort_cluster::myid();
    assert_eq!(
        cohort_cluster::blocking::remotecall_fetch(add, me, (40, 2)).unwrap(),
        42
    );
    assert_eq!(
        cohort_cluster::blocking::remotecall_fetch(greet, me, ("cohort".to_string(),)).unwrap(),
        "hello cohort"
    );
    assert_eq!(
        cohort_cluster::blocking::remotecall_fetch(nested::twice, me, (21,)).unwrap(),
        42
    );
}

#[test]
fn main_runs_the_body_outside_worker_mode() {
    assert_eq!(sync_entry(), 7);
    assert_eq!(async_entry(), 5);
}
