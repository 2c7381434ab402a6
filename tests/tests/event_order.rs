//! Events of a container's end, once each and in order: two concurrent Deletes of a task
//! publish one `/tasks/delete` (the second answers NotFound, as the stock shim's deleted
//! state does). Driven through containerd's gRPC API, so both Deletes are under way at once.

use std::time::Duration;

use mini_e2e::grpc::{Grpc, mini_container};
use mini_e2e::{Containerd, Version, wait_until};

mini_e2e::on_every_version!(concurrent_deletes_publish_one_task_delete);

fn concurrent_deletes_publish_one_task_delete(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("del2");
    let id = ns.new_id("del2");
    let (grpc, rootfs) = mini_container(&ns, &id, &["sleep", "300"]);
    let events = ns.subscribe_events();
    grpc.create_task(&id, &rootfs).expect("create");
    // A created task: each Delete kills its blocked init and waits for its exit, a window
    // wide enough for the other Delete to arrive.
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (ns, id) = (&ns, &id);
                s.spawn(move || {
                    let client = Grpc::connect(&ns.daemon().address(), ns.name());
                    client.delete_task(id)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        results.iter().any(Result::is_ok),
        "one Delete succeeds: {results:?}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || events
            .stdout_so_far()
            .contains("/tasks/delete")),
        "no /tasks/delete: {}",
        events.stdout_so_far()
    );
    // Time for a second one to show up.
    std::thread::sleep(Duration::from_secs(1));
    let text = events.stop().stdout;
    let deletes = text
        .lines()
        .filter(|l| l.contains("/tasks/delete") && l.contains(&id))
        .count();
    assert_eq!(deletes, 1, "{results:?}\n{text}");
    ns.ctr(&["container", "delete", &id]).expect_success();
    ns.assert_nothing_left(&id);
}
