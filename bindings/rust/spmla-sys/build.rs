//! Finds libspmla for linking. Order:
//!  1. SPMLA_DIR: a directory that holds libspmla.so (a build tree's lib/ or an
//!     install's lib dir), or an install prefix (lib, lib64, lib/<multiarch>).
//!  2. `pkg-config spmla` (the binary named by $PKG_CONFIG, default pkg-config).
//!  3. The default prefixes /usr/local and /usr.
//!
//! If none has the library, it still asks the linker for -lspmla (LIBRARY_PATH may
//! know it) and prints a warning saying where it looked.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn has_lib(dir: &Path) -> bool {
    dir.join("libspmla.so").exists() || dir.join("libspmla.so.1").exists()
}

fn lib_dirs_of_prefix(prefix: &Path) -> Vec<PathBuf> {
    let mut v = vec![
        prefix.to_path_buf(),
        prefix.join("lib"),
        prefix.join("lib64"),
    ];
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env_ = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if !arch.is_empty() && !os.is_empty() {
        v.push(prefix.join("lib").join(format!("{arch}-{os}-{env_}")));
    }
    v
}

fn include_of_lib_dir(lib: &Path) -> Option<PathBuf> {
    // <prefix>/lib[/<multiarch>] -> <prefix>/include
    for anc in lib.ancestors().skip(1).take(2) {
        let inc = anc.join("include");
        if inc.join("spmla.h").exists() {
            return Some(inc);
        }
    }
    None
}

fn pkg_config() -> Option<(PathBuf, Option<PathBuf>)> {
    let exe = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let out = Command::new(&exe)
        .args(["--variable=libdir", "spmla"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let libdir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    if libdir.is_empty() {
        return None;
    }
    let inc = Command::new(&exe)
        .args(["--variable=includedir", "spmla"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| !p.as_os_str().is_empty());
    Some((PathBuf::from(libdir), inc))
}

fn main() {
    println!("cargo:rerun-if-env-changed=SPMLA_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_LIBDIR");
    println!("cargo:rerun-if-changed=build.rs");

    let mut tried: Vec<String> = Vec::new();
    let mut found: Option<(PathBuf, Option<PathBuf>)> = None;

    if let Some(dir) = env::var_os("SPMLA_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        for cand in lib_dirs_of_prefix(&dir) {
            tried.push(cand.display().to_string());
            if has_lib(&cand) {
                let inc = include_of_lib_dir(&cand)
                    .or_else(|| Some(dir.join("include")).filter(|i| i.join("spmla.h").exists()));
                found = Some((cand, inc));
                break;
            }
        }
        if found.is_none() {
            println!(
                "cargo:warning=SPMLA_DIR={} holds no libspmla.so (looked in {})",
                dir.display(),
                tried.join(", ")
            );
        }
    }
    if found.is_none() {
        match pkg_config() {
            Some((lib, inc)) if has_lib(&lib) => found = Some((lib, inc)),
            Some((lib, _)) => tried.push(format!("pkg-config libdir {}", lib.display())),
            None => tried.push("pkg-config spmla (not found)".to_string()),
        }
    }
    if found.is_none() {
        for prefix in ["/usr/local", "/usr"] {
            for cand in lib_dirs_of_prefix(Path::new(prefix)).into_iter().skip(1) {
                tried.push(cand.display().to_string());
                if has_lib(&cand) {
                    let inc = include_of_lib_dir(&cand);
                    found = Some((cand, inc));
                    break;
                }
            }
            if found.is_some() {
                break;
            }
        }
    }

    match found {
        Some((lib, inc)) => {
            println!("cargo:rustc-link-search=native={}", lib.display());
            println!("cargo:lib_dir={}", lib.display());
            // This crate's own test binary runs against the library it was linked with
            // (link args are not passed on to dependent crates).
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
            if let Some(inc) = inc {
                println!("cargo:include_dir={}", inc.display());
            }
        }
        None => println!(
            "cargo:warning=libspmla not found (set SPMLA_DIR to its lib dir or install prefix); looked in: {}",
            tried.join(", ")
        ),
    }
    println!("cargo:rustc-link-lib=dylib=spmla");
}
