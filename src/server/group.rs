//! One `/metrics` for a `--processes` group. The supervisor makes a private directory (on tmpfs when
//! `/dev/shm` is there) and hands it to its children (`RINGCAST_METRICS_DIR`); every
//! [`PUBLISH_EVERY`] each child writes its own exposition there (`process-<i>.prom`, written aside and
//! renamed, so a reader sees a whole snapshot or the previous one). Whichever child a scrape reaches
//! answers with every child's latest snapshot merged, each series labelled `process="<i>"`.
//!
//! Why snapshots for every process, its own included: each series then comes from one writer whose
//! snapshots only move forward, so two scrapes answered by different children never see a counter go
//! back. A restarted child starts its series from 0 again: a counter reset of that one `process`
//! series, which Prometheus' `rate()`/`increase()` handle (the supervisor removes the dead child's file,
//! so its gauges do not linger while it restarts). docs/runtime.md has the operator's side.

use std::fmt::Write;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the supervisor tells its children where the group's snapshots are.
pub const DIR_ENV: &str = "RINGCAST_METRICS_DIR";
/// The child's index in the group (its `process` label).
pub const INDEX_ENV: &str = "RINGCAST_PROCESS_INDEX";
/// How often a child publishes its snapshot: the most a group scrape lags the counters.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// The supervisor's directory of snapshots, removed when dropped.
#[derive(Debug)]
pub struct GroupDir(PathBuf);

impl GroupDir {
    /// A fresh directory, readable by this user only.
    pub fn create() -> io::Result<GroupDir> {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let path = base.join(format!("ringcast-{}-metrics", std::process::id()));
        // A leftover of an earlier process with our PID (killed before it could clean up).
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(GroupDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Forget child `index`'s snapshot (it exited; its replacement publishes its own).
    pub fn forget(&self, index: u32) {
        let _ = std::fs::remove_file(snapshot_path(&self.0, index));
    }
}

impl Drop for GroupDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn snapshot_path(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("process-{index}.prom"))
}

/// A child's place in its group.
#[derive(Debug, Clone)]
pub struct Group {
    dir: PathBuf,
    index: u32,
}

impl Group {
    /// From the environment the supervisor set; `None` outside a group.
    pub fn from_env() -> Option<Group> {
        let dir = std::env::var_os(DIR_ENV)?;
        let index = std::env::var(INDEX_ENV).ok()?.parse().ok()?;
        Some(Group {
            dir: dir.into(),
            index,
        })
    }

    /// Replace this process's snapshot with `text` (write aside, then rename: readers never see half).
    pub fn publish(&self, text: &str) -> io::Result<()> {
        let tmp = self.dir.join(format!(".process-{}.tmp", self.index));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, snapshot_path(&self.dir, self.index))
    }

    /// Every process's latest snapshot, merged (what `/metrics` answers in a group).
    pub fn render(&self) -> String {
        let mut parts: Vec<(u32, String)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(index) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix("process-")?.strip_suffix(".prom"))
                    .and_then(|i| i.parse().ok())
                else {
                    continue;
                };
                if let Ok(text) = std::fs::read_to_string(entry.path()) {
                    parts.push((index, text));
                }
            }
        }
        parts.sort_by_key(|(i, _)| *i);
        merge(&parts)
    }

    /// Publish `render()` every [`PUBLISH_EVERY`] until `stop`, and once more then.
    pub fn start_publishing(
        self,
        render: impl Fn() -> String + Send + 'static,
        stop: Arc<AtomicBool>,
    ) -> io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("ringcast-metrics".into())
            .spawn(move || {
                let mut failing = false;
                loop {
                    let last = stop.load(Ordering::Acquire);
                    match self.publish(&render()) {
                        Ok(()) => failing = false,
                        Err(e) if !failing => {
                            failing = true;
                            tracing::error!(dir = %self.dir.display(), error = %e, "cannot publish metrics for the group");
                        }
                        Err(_) => {}
                    }
                    if last {
                        return;
                    }
                    std::thread::sleep(PUBLISH_EVERY);
                }
            })
    }
}

/// Merge expositions of the group's processes: each family once (its `# HELP`/`# TYPE` from the first
/// process that has it, in first-seen order), then its samples, process by process, each labelled
/// `process="<i>"`.
pub fn merge(parts: &[(u32, String)]) -> String {
    struct Family<'a> {
        name: &'a str,
        head: Vec<&'a str>,
        samples: String,
    }
    let mut families: Vec<Family> = Vec::new();
    for (index, text) in parts {
        let mut current: Option<usize> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or("");
                let at = match families.iter().position(|f| f.name == name) {
                    Some(at) => at,
                    None => {
                        families.push(Family {
                            name,
                            head: vec![line],
                            samples: String::new(),
                        });
                        families.len() - 1
                    }
                };
                current = Some(at);
            } else if line.starts_with("# TYPE ") {
                if let Some(f) = current.map(|at| &mut families[at])
                    && f.head.len() == 1
                {
                    f.head.push(line);
                }
            } else if line.starts_with('#') || line.is_empty() {
                continue;
            } else if let Some(at) = current {
                let samples = &mut families[at].samples;
                match line.find(['{', ' ']) {
                    Some(i) if line.as_bytes()[i] == b'{' => {
                        let _ = writeln!(
                            samples,
                            "{}{{process=\"{index}\",{}",
                            &line[..i],
                            &line[i + 1..]
                        );
                    }
                    Some(i) => {
                        let _ = writeln!(
                            samples,
                            "{}{{process=\"{index}\"}}{}",
                            &line[..i],
                            &line[i..]
                        );
                    }
                    None => {}
                }
            }
        }
    }
    let mut out = String::with_capacity(parts.iter().map(|(_, t)| t.len() + t.len() / 4).sum());
    for f in families {
        for line in f.head {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&f.samples);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_appear_once_with_each_process_labelled() {
        let a = "# HELP x_total X.\n# TYPE x_total counter\nx_total 3\n# HELP y Y.\n# TYPE y gauge\ny{worker=\"0\"} 1\ny{worker=\"1\"} 2\n";
        let b = "# HELP x_total X.\n# TYPE x_total counter\nx_total 5\n# HELP y Y.\n# TYPE y gauge\ny{worker=\"0\"} 7\n";
        let merged = merge(&[(0, a.into()), (2, b.into())]);
        assert_eq!(
            merged,
            "# HELP x_total X.\n# TYPE x_total counter\nx_total{process=\"0\"} 3\nx_total{process=\"2\"} 5\n\
             # HELP y Y.\n# TYPE y gauge\ny{process=\"0\",worker=\"0\"} 1\ny{process=\"0\",worker=\"1\"} 2\n\
             y{process=\"2\",worker=\"0\"} 7\n"
        );
    }

    #[test]
    fn histograms_keep_their_bucket_lines_together_per_process() {
        let h = "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
        let merged = merge(&[(0, h.into()), (1, h.into())]);
        let lines: Vec<&str> = merged.lines().collect();
        assert_eq!(lines.len(), 2 + 8);
        assert_eq!(lines[2], "h_bucket{process=\"0\",le=\"1\"} 1");
        assert_eq!(lines[5], "h_count{process=\"0\"} 2");
        assert_eq!(lines[9], "h_count{process=\"1\"} 2");
    }

    #[test]
    fn a_published_snapshot_is_read_back_merged() {
        let dir = std::env::temp_dir().join(format!("ringcast-group-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let g1 = Group {
            dir: dir.clone(),
            index: 1,
        };
        let g0 = Group {
            dir: dir.clone(),
            index: 0,
        };
        g1.publish("# HELP c C.\n# TYPE c counter\nc 2\n").unwrap();
        g0.publish("# HELP c C.\n# TYPE c counter\nc 1\n").unwrap();
        assert_eq!(
            g1.render(),
            "# HELP c C.\n# TYPE c counter\nc{process=\"0\"} 1\nc{process=\"1\"} 2\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
