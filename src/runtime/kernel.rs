//! The kernel Ringcast needs, checked once at start-up so an old or locked-down kernel is named plainly
//! instead of failing later as "Invalid argument (os error 22)" from the first worker.
//!
//! The io_uring features used, and the release that brought each (the minimum is their maximum, 6.1):
//! - `IORING_SETUP_SUBMIT_ALL` (5.18), `IORING_SETUP_COOP_TASKRUN` (5.19), `IORING_SETUP_SINGLE_ISSUER`
//!   (6.0), `IORING_SETUP_DEFER_TASKRUN` (6.1): one ring per thread, completions run when it waits;
//! - sparse registered files (5.19), accept into a direct descriptor (5.19), provided-buffer rings (5.19);
//! - multishot receive (6.0), `IORING_OP_SEND`/`SENDMSG`/`SHUTDOWN`/`CLOSE`/`ASYNC_CANCEL` on fixed files.

use io_uring::{IoUring, opcode};

/// The oldest kernel with every feature above.
pub const MINIMUM: (u32, u32) = (6, 1);

/// `6.1.0-13-amd64` → (6, 1).
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|r| r.trim().to_string())
}

/// Sets one `IORING_SETUP_*` flag on a ring builder.
type SetupFlag = fn(&mut io_uring::Builder) -> &mut io_uring::Builder;

/// Why io_uring cannot be used here, phrased for the operator; `Ok` when every feature is there.
pub fn check() -> Result<(), String> {
    let release = release().unwrap_or_else(|| "unknown".into());
    let need = format!("Linux {}.{} or newer", MINIMUM.0, MINIMUM.1);
    if let Some(version) = parse_release(&release)
        && version < MINIMUM
    {
        return Err(format!(
            "kernel {release} is too old: Ringcast needs {need} (io_uring with \
             IORING_SETUP_DEFER_TASKRUN, 6.1; multishot receive, 6.0; provided-buffer rings, 5.19)"
        ));
    }
    let plain = IoUring::new(8).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) => format!(
            "io_uring is not allowed here ({e}): the sysctl kernel.io_uring_disabled is set, or a \
             seccomp profile (e.g. a container runtime's default) blocks io_uring_setup; allow it"
        ),
        Some(libc::ENOSYS) => format!(
            "io_uring is not available ({e}): the kernel was built without it or a seccomp profile \
             blocks it; Ringcast needs {need} with io_uring"
        ),
        _ => format!("cannot create an io_uring ({e})"),
    })?;
    let setup: [(&str, SetupFlag); 4] = [
        ("IORING_SETUP_SUBMIT_ALL (Linux 5.18)", |b| {
            b.setup_submit_all()
        }),
        ("IORING_SETUP_COOP_TASKRUN (Linux 5.19)", |b| {
            b.setup_coop_taskrun()
        }),
        ("IORING_SETUP_SINGLE_ISSUER (Linux 6.0)", |b| {
            b.setup_single_issuer()
        }),
        ("IORING_SETUP_DEFER_TASKRUN (Linux 6.1)", |b| {
            b.setup_single_issuer().setup_defer_taskrun()
        }),
    ];
    for (feature, set) in setup {
        let mut builder = IoUring::builder();
        set(&mut builder)
            .build(8)
            .map_err(|e| missing(feature, &release, &need, e))?;
    }
    let mut probe = io_uring::Probe::new();
    plain
        .submitter()
        .register_probe(&mut probe)
        .map_err(|e| missing("IORING_REGISTER_PROBE (Linux 5.6)", &release, &need, e))?;
    let opcodes = [
        ("IORING_OP_ACCEPT", opcode::Accept::CODE),
        ("IORING_OP_RECV", opcode::Recv::CODE),
        ("IORING_OP_SEND", opcode::Send::CODE),
        ("IORING_OP_SENDMSG", opcode::SendMsg::CODE),
        ("IORING_OP_SHUTDOWN", opcode::Shutdown::CODE),
        ("IORING_OP_CLOSE", opcode::Close::CODE),
        ("IORING_OP_ASYNC_CANCEL", opcode::AsyncCancel2::CODE),
        ("IORING_OP_READ", opcode::Read::CODE),
    ];
    for (name, code) in opcodes {
        if !probe.is_supported(code) {
            return Err(format!(
                "the kernel's io_uring lacks {name} (kernel {release}; Ringcast needs {need})"
            ));
        }
    }
    Ok(())
}

fn missing(feature: &str, release: &str, need: &str, e: std::io::Error) -> String {
    format!("the kernel's io_uring lacks {feature} ({e}; kernel {release}; Ringcast needs {need})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        assert_eq!(parse_release("6.1.0-13-amd64"), Some((6, 1)));
        assert_eq!(parse_release("5.15.0"), Some((5, 15)));
        assert_eq!(parse_release("6.18"), Some((6, 18)));
        assert_eq!(parse_release("weird"), None);
        assert!(parse_release("5.19.1").unwrap() < MINIMUM);
    }

    #[test]
    fn this_kernel_has_every_feature() {
        check().unwrap();
    }
}
