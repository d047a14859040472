//! What a check found: each problem with its path, and the report listing them all.

use std::fmt;

/// One configuration problem: where, and what was expected. Never contains a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key's path (`practices[1].lenders.order[2]`), or the environment variable or file the
    /// problem is about.
    pub path: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a configuration, in the order of the file's sections. `Display` prints
/// one problem per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigReport {
    /// The problems; never empty when returned as an error.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl ConfigReport {
    pub(super) fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                path: path.into(),
                message: message.into(),
            }],
        }
    }

    /// The paths of the problems, in order (handy in tests and scripts).
    pub fn paths(&self) -> Vec<&str> {
        self.problems.iter().map(|p| p.path.as_str()).collect()
    }
}
