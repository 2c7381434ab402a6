//! What containerd learns about mini from `containerd-shim-mini-v2 -info`: the runtime-spec
//! features document containerd 2.x shows in `ctr plugins inspect-runtime`.

use mini_e2e::{Containerd, MINI, Version};

#[test]
fn inspect_runtime_shows_the_features_containerd_2() {
    let cd = Containerd::start(Version::V2);
    let ns = cd.namespace("rtinfo");
    let out = ns.ctr(&["plugins", "inspect-runtime", "--runtime", MINI]);
    out.expect_success();
    let text = out.stdout.clone();
    // containerd decoded the document (it shows it as JSON, not as bytes of an unknown Any).
    assert!(
        text.contains("\"ociVersionMax\""),
        "no features document:\n{text}"
    );
    for want in [
        "CAP_SYS_ADMIN",
        "SCMP_ACT_ERRNO",
        "\"cgroup\"",
        "SCMP_ARCH_X86_64",
    ] {
        assert!(
            text.contains(want),
            "{want} missing from inspect-runtime:\n{text}"
        );
    }
}
