//! A task re-created under the same container id the moment the previous one's Delete
//! returned gets a new shim: the old shim's socket is gone before its Shutdown answers, so
//! `start` never finds it "in use by another shim". Driven through containerd's gRPC API:
//! a `ctr` process per call starts too slowly to hit the window.

use mini_e2e::grpc::mini_container;
use mini_e2e::{Containerd, Version};

mini_e2e::on_every_version!(fifty_immediate_re_creates_of_the_same_id_all_succeed);

const ROUNDS: usize = 50;

fn fifty_immediate_re_creates_of_the_same_id_all_succeed(version: Version) {
    let cd = Containerd::start(version);
    let ns = cd.busybox_namespace("recreate");
    let id = ns.new_id("recreate");
    let (grpc, rootfs) = mini_container(&ns, &id, &["sleep", "300"]);

    let mut failures = Vec::new();
    let mut stale = Vec::new();
    for round in 0..ROUNDS {
        match grpc.create_task(&id, &rootfs) {
            Ok(_) => {
                // The previous shim's clean-up (containerd runs `delete` after every
                // disconnect) must not touch the new task.
                std::thread::sleep(std::time::Duration::from_millis(100));
                match grpc.task_status(&id) {
                    Ok((1, _)) => {}
                    other => stale.push(format!("round {round}: {other:?}")),
                }
                // A created task: Delete kills its blocked init.
                if let Err(e) = grpc.delete_task(&id) {
                    panic!("round {round}: delete of {id}: {e:?}");
                }
            }
            Err(e) => failures.push(format!("round {round}: {}", e.message())),
        }
    }
    eprintln!(
        "{} of {ROUNDS} immediate re-creates failed on containerd {version:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {ROUNDS} re-creates of {id} failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    assert!(stale.is_empty(), "re-created tasks not CREATED: {stale:?}");
    ns.ctr(&["container", "delete", &id]).expect_success();
    ns.assert_nothing_left(&id);
}
