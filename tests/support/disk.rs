//! Disk faults: a small tmpfs under a node's data directory, filled up or made
//! read-only.

use std::time::Duration;

use crate::TestCluster;

/// Copies a directory tree.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A tmpfs of `size` mounted at `dir` for the test's lifetime (needs root, as the
/// README's test command is run).
pub struct SmallDisk {
    pub dir: std::path::PathBuf,
}

impl SmallDisk {
    pub fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let o = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            o.status.success(),
            "this test mounts a small tmpfs and needs root (run the README's test command as root): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    /// Fills the disk to the last byte.
    pub fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
    }

    pub fn free(&self) {
        let _ = std::fs::remove_file(self.dir.join("filler"));
    }

    /// Makes the directory read-only (`true`) or writable again, with a read-only bind
    /// mount over it: creating, renaming or removing files fails with EROFS (even for
    /// root), while files the node already holds open stay writable (a tmpfs cannot be
    /// remounted read-only under open files).
    pub fn read_only(&self, ro: bool) {
        let run = |args: &[&str]| {
            let o = std::process::Command::new(args[0])
                .args(&args[1..])
                .arg(&self.dir)
                .args(if args[0] == "mount" && args.contains(&"--bind") {
                    vec![self.dir.clone()]
                } else {
                    vec![]
                })
                .output()
                .expect("run mount");
            assert!(
                o.status.success(),
                "{args:?} {}: {}",
                self.dir.display(),
                String::from_utf8_lossy(&o.stderr)
            );
        };
        if ro {
            run(&["mount", "--bind"]);
            run(&["mount", "-o", "remount,bind,ro"]);
        } else {
            run(&["umount"]);
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

impl TestCluster {
    /// Moves node `i`'s data directory onto a tmpfs of `size` (stopping and restarting
    /// the node), for full-disk faults.
    pub fn put_data_on_small_disk(&mut self, i: usize, size: &str) -> SmallDisk {
        self.stop(i, Duration::from_secs(15))
            .unwrap_or_else(|| panic!("n{i} did not stop on SIGTERM"));
        let data = self.data_dir(i);
        let saved = self.pki.path().join(format!("data-n{i}.saved"));
        std::fs::rename(&data, &saved).unwrap();
        let disk = SmallDisk::mount(&data, size);
        copy_dir(&saved, &data);
        std::fs::remove_dir_all(&saved).unwrap();
        self.start_node(i);
        disk
    }
}
