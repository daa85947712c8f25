//! Compiles the eBPF C programs in `bpf/` (pidcap.bpf.c, which includes
//! pidcap_tls.bpf.c) with clang into `$OUT_DIR/pidcap.bpf.o`,
//! which the engine embeds with `include_bytes!`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bpf");
    let src = root.join("pidcap.bpf.c");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("pidcap.bpf.o");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed={}", root.join("pidcap_abi.h").display());
    println!("cargo:rerun-if-changed={}", root.join("pidcap_tls.bpf.c").display());
    println!("cargo:rerun-if-env-changed=CLANG");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let arch_inc = format!("/usr/include/{arch}-linux-gnu");
    // bpf_tracing.h reads the uprobes' arguments from the target's pt_regs.
    let target_arch = match arch.as_str() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        "riscv64" => "riscv",
        "powerpc64" => "powerpc",
        "s390x" => "s390",
        other => other,
    };
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-D__TARGET_ARCH_{target_arch}"))
        .arg(format!("-I{arch_inc}"))
        .arg(format!("-I{}", root.display()))
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("clang failed to compile {} ({s})", src.display()),
        Err(e) => panic!(
            "cannot run `{clang}` to compile the eBPF programs ({e}); install clang and libbpf-dev \
             (Debian: apt-get install clang libbpf-dev linux-libc-dev) or set CLANG"
        ),
    }
}
