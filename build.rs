//! Marks the PostgreSQL and S3 tests to run or to be ignored, so that a test run without
//! a server reports them as ignored instead of as passed.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(jobworks_postgres_tests)");
    println!("cargo::rerun-if-env-changed=JOBWORKS_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-changed=build.rs");
    let set = std::env::var_os("JOBWORKS_TEST_POSTGRES_URL").is_some_and(|url| !url.is_empty());
    if set {
        println!("cargo::rustc-cfg=jobworks_postgres_tests");
    }
    println!("cargo::rustc-check-cfg=cfg(jobworks_pgbouncer_tests)");
    println!("cargo::rerun-if-env-changed=JOBWORKS_TEST_PGBOUNCER_URL");
    if set && std::env::var_os("JOBWORKS_TEST_PGBOUNCER_URL").is_some_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=jobworks_pgbouncer_tests");
    }
    println!("cargo::rustc-check-cfg=cfg(jobworks_s3_tests)");
    println!("cargo::rerun-if-env-changed=JOBWORKS_TEST_S3_ENDPOINT");
    if std::env::var_os("JOBWORKS_TEST_S3_ENDPOINT").is_some_and(|url| !url.is_empty()) {
        println!("cargo::rustc-cfg=jobworks_s3_tests");
    }
}
