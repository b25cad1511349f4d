//! Runs the `DictChannel` example (a port of Julia's `dictchannel.jl`) as a
//! test, so the example cannot rot.

// The example's `main` is not used here, and its `pub` items are the example
// binary's API, private in this test.
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/dict_channel.rs"]
mod dict_channel;

use cohort_channels::AbstractChannel;
use dict_channel::DictChannel;

#[tokio::test]
async fn dict_channel_demo_passes() {
    dict_channel::demo().await;
}

#[tokio::test]
async fn dict_channel_is_usable_as_box_dyn() {
    let chan: Box<dyn AbstractChannel<&'static str, u32>> = Box::new(DictChannel::new());
    chan.put(1, "one").await.unwrap();
    chan.put(2, "two").await.unwrap();
    chan.put(1, "uno").await.unwrap(); // replaces, like `D.d[k] = v`
    assert_eq!(chan.fetch(1).await, Ok("uno"));
    assert_eq!(chan.take(2).await, Ok("two"));
    assert!(!chan.isready(2));
    assert!(chan.isready(1));
}

#[test]
fn dict_channel_isready_any() {
    let chan = DictChannel::<u8, u8>::new();
    assert!(!chan.isready_any());
    futures::executor::block_on(chan.put(0, 0)).unwrap();
    assert!(chan.isready_any());
}
