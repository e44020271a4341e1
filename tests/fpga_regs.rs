//! The register map's two sides agree: `hls/include/hitgate_trigger_regs.h` is compiled (g++) into a
//! program that prints every constant it defines, and each must equal the Rust mirror's
//! (`trigger::fpga::regs`) — and every constant the header defines must be mirrored.

mod common;

use std::path::Path;
use std::process::Command;

use hitgate::trigger::fpga::regs;

#[test]
fn the_rust_register_map_equals_the_compiled_c_header() {
    if Command::new("g++").arg("--version").output().is_err() {
        common::missing("g++");
        return;
    }
    let header = Path::new(env!("CARGO_MANIFEST_DIR")).join("hls/include/hitgate_trigger_regs.h");
    let text = std::fs::read_to_string(&header).unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("HG_"))
        .filter(|n| *n != "HITGATE_TRIGGER_REGS_H")
        .collect();
    assert!(names.len() >= 20, "{names:?}");
    let mut program = format!("#include <cstdio>\n#include \"{}\"\nint main() {{\n", header.display());
    for n in &names {
        program.push_str(&format!("    std::printf(\"{n} %llu\\n\", (unsigned long long)({n}));\n"));
    }
    program.push_str("    return 0;\n}\n");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("regs.cpp");
    let exe = dir.path().join("regs");
    std::fs::write(&src, program).unwrap();
    let built = Command::new("g++").arg("-o").arg(&exe).arg(&src).output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let printed = String::from_utf8(Command::new(&exe).output().unwrap().stdout).unwrap();
    let mut checked = 0;
    for line in printed.lines() {
        let (name, value) = line.split_once(' ').unwrap();
        let value: u64 = value.parse().unwrap();
        let mirrored = regs::ALL.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        assert_eq!(mirrored, Some(value), "{name}: header {value:#x}, Rust {mirrored:?}");
        checked += 1;
    }
    assert_eq!(checked, regs::ALL.len(), "the Rust side has constants the header lacks");
}
