//! Lets this crate's tests and examples find libspmla at run time without
//! LD_LIBRARY_PATH: spmla-sys exports the directory it linked from
//! (DEP_SPMLA_LIB_DIR) and we put it in the rpath of this package's test and example binaries.
//! Libraries and programs that depend on `spmla` decide their own rpath.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_SPMLA_LIB_DIR");
    if let Ok(dir) = std::env::var("DEP_SPMLA_LIB_DIR") {
        // Applies to this package's own binaries (unit and integration tests,
        // examples), never to crates that depend on it.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
