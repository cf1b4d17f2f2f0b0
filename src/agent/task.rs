//! Reading a task file: YAML into [`Task`], with errors that name the file, the line and
//! what was expected, before anything is started.

use std::path::{Path, PathBuf};

use crate::protocol::runs::Task;
use crate::store::StoreError;

/// Loads and validates a task file; a relative `workdir` (default `.`) is made absolute
/// against the file's own directory, so the task means the same wherever it runs.
pub fn load(path: &Path) -> Result<Task, StoreError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StoreError::io("cannot read task file", path, e))?;
    let mut task: Task = serde_norway::from_str(&text).map_err(|e| StoreError::yaml(path, e))?;
    task.validate()
        .and_then(|()| crate::evidence::checks::validate(&task.accept))
        .map_err(|message| StoreError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let base = std::path::absolute(&base).unwrap_or(base);
    let workdir = base.join(task.workdir.as_deref().unwrap_or("."));
    task.workdir = Some(normalize(&workdir).display().to_string());
    Ok(task)
}

/// A task from a goal string alone: work happens in the current directory.
pub fn from_goal(goal: &str) -> Result<Task, String> {
    let task = Task {
        goal: goal.to_string(),
        mode: None,
        workdir: std::env::current_dir()
            .ok()
            .map(|d| d.display().to_string()),
        budget: Default::default(),
        steps: Vec::new(),
        accept: Vec::new(),
        policy: Default::default(),
        approval_timeout_secs: None,
    };
    task.validate()?;
    Ok(task)
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("task.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_full_task_parses_and_workdir_is_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "goal: serve\nmode: always-execute\nworkdir: site\nbudget: {max_steps: 3}\nsteps:\n  - run: echo hi\n    background: true\naccept:\n  - claim: up\n    http: http://127.0.0.1:1/\n    expect_status: 200\n",
        );
        let t = load(&p).unwrap();
        assert_eq!(t.steps.len(), 1);
        assert!(t.steps[0].background);
        assert_eq!(t.budget.max_steps, Some(3));
        assert_eq!(
            t.workdir.unwrap(),
            dir.path().join("site").display().to_string()
        );
    }

    #[test]
    fn errors_name_file_line_and_expectation() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(&write(
            dir.path(),
            "goal: x\nsteps:\n  - run: ls\n    backgrund: true\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("task.yaml:4:"), "{e}");
        assert!(e.contains("backgrund"), "{e}");
        let e = load(&write(dir.path(), "goal: x\nbudget: {max_steps: many}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("task.yaml:2:"), "{e}");
        let e = load(&write(
            dir.path(),
            "goal: x\naccept:\n  - claim: c\n    ping: host\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("ping"), "{e}");
        let e = load(&write(dir.path(), "goal: x\naccept:\n  - claim: c\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no check"), "{e}");
        let e = load(&write(dir.path(), "steps: []\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("goal"), "{e}");
        let e = load(&dir.path().join("missing.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.yaml"), "{e}");
    }
}
