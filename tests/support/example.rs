// Shared by the test files that run an example as its own process.

/// The built example `name`, next to this test's binary; built first with `features`
/// when missing.
pub(super) fn binary(name: &str, features: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join("examples").join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--example", name, "--features", features])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "the {name} example builds");
    }
    path
}
