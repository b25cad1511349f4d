//! Machine specifications for [`SshManager`](crate::SshManager): Julia's
//! `[count*][user@]host[:port] [bind_addr[:port]]` strings and machine files.
//!
//! ```
//! use cohort_transport::machines::{Count, MachineSpec};
//! let m: MachineSpec = "2*alice@node1:2222 10.0.0.1".parse().unwrap();
//! assert_eq!(m.count, Count::Fixed(2));
//! assert_eq!(m.user.as_deref(), Some("alice"));
//! assert_eq!(m.host, "node1");
//! assert_eq!(m.port, Some(2222));
//! assert_eq!(m.bind_addr.as_deref(), Some("10.0.0.1"));
//! ```

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use thiserror::Error;

/// How many workers to start on a machine.
///
/// ```
/// use cohort_transport::machines::Count;
/// assert_eq!("auto".parse::<Count>().unwrap(), Count::Auto);
/// assert_eq!("3".parse::<Count>().unwrap(), Count::Fixed(3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Count {
    /// A fixed number of workers.
    Fixed(usize),
    /// As many workers as the remote host has CPU threads (asked over ssh with `nproc`).
    #[default]
    Auto,
}

impl FromStr for Count {
    type Err = MachineSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().trim_start_matches(':');
        if s == "auto" {
            return Ok(Count::Auto);
        }
        match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Count::Fixed(n)),
            _ => Err(MachineSpecError::BadCount(s.to_string())),
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Fixed(n) => write!(f, "{n}"),
            Count::Auto => f.write_str("auto"),
        }
    }
}

/// Why a machine specification or machine file could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MachineSpecError {
    /// The specification was empty.
    #[error("empty machine specification")]
    Empty,
    /// The count before `*` was neither a positive number nor `auto`.
    #[error("bad worker count {0:?} (expected a positive number or auto)")]
    BadCount(String),
    /// A port was not a number from 1 to 65535.
    #[error("bad port {0:?}")]
    BadPort(String),
    /// The host part was empty or malformed.
    #[error("bad host in {0:?}")]
    BadHost(String),
    /// More than two whitespace-separated parts.
    #[error("unexpected text {0:?} after the bind address")]
    Trailing(String),
    /// A line of a machine file was malformed.
    #[error("{path}:{line}: {error}")]
    File {
        /// The machine file.
        path: String,
        /// The 1-based line number.
        line: usize,
        /// What was wrong with that line.
        error: Box<MachineSpecError>,
    },
    /// The machine file could not be read.
    #[error("cannot read machine file {path}: {reason}")]
    Read {
        /// The machine file.
        path: String,
        /// The I/O error, as text.
        reason: String,
    },
}

/// One machine to start workers on: `[count*][user@]host[:port] [bind_addr[:port]]`.
///
/// - `count`: how many workers (a number or `auto`, the host's CPU threads); 1 if
///   omitted.
/// - `user@host:port`: where ssh logs in (`port` is sshd's port).
/// - `bind_addr:port`: the address the workers listen on, which the master and the
///   other workers connect to (default: the host itself).
///
/// ```
/// use cohort_transport::machines::{Count, MachineSpec};
/// let m: MachineSpec = "[::1]:22 [::1]:9000".parse().unwrap();
/// assert_eq!((m.host.as_str(), m.port), ("::1", Some(22)));
/// assert_eq!((m.bind_addr.as_deref(), m.bind_port), (Some("::1"), Some(9000)));
/// assert_eq!(m.count, Count::Fixed(1));
/// assert_eq!(m.to_string(), "1*[::1]:22 [::1]:9000");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    /// How many workers to start there.
    pub count: Count,
    /// The login user, if not ssh's default.
    pub user: Option<String>,
    /// The host to ssh to.
    pub host: String,
    /// sshd's port, if not ssh's default.
    pub port: Option<u16>,
    /// The address workers bind to and are reached at.
    pub bind_addr: Option<String>,
    /// The port workers bind to (0 or `None`: any free port).
    pub bind_port: Option<u16>,
}

impl MachineSpec {
    /// A spec for `count` workers on `host`, with the defaults otherwise.
    ///
    /// ```
    /// use cohort_transport::machines::{Count, MachineSpec};
    /// let m = MachineSpec::new("node1", Count::Auto);
    /// assert_eq!(m.to_string(), "auto*node1");
    /// ```
    pub fn new(host: impl Into<String>, count: Count) -> Self {
        MachineSpec {
            count,
            user: None,
            host: host.into(),
            port: None,
            bind_addr: None,
            bind_port: None,
        }
    }

    /// Julia's `(spec, count)` form: the spec with its count replaced.
    ///
    /// # Errors
    /// As parsing the spec.
    ///
    /// ```
    /// use cohort_transport::machines::{Count, MachineSpec};
    /// let m = MachineSpec::with_count("bob@node2", Count::Auto).unwrap();
    /// assert_eq!((m.count, m.host.as_str()), (Count::Auto, "node2"));
    /// ```
    pub fn with_count(spec: &str, count: Count) -> Result<Self, MachineSpecError> {
        let mut m: MachineSpec = spec.parse()?;
        m.count = count;
        Ok(m)
    }

    /// The ssh destination, `user@host` or `host`.
    ///
    /// ```
    /// let m: cohort_transport::machines::MachineSpec = "u@h:2".parse().unwrap();
    /// assert_eq!(m.destination(), "u@h");
    /// ```
    pub fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }
}

fn host_port(s: &str, whole: &str) -> Result<(String, Option<u16>), MachineSpecError> {
    let bad_host = || MachineSpecError::BadHost(whole.to_string());
    let port = |p: &str| match p.parse::<u16>() {
        Ok(n) => Ok(n),
        Err(_) => Err(MachineSpecError::BadPort(p.to_string())),
    };
    let (host, p) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad_host)?;
        match after {
            "" => (h, None),
            a => (h, Some(port(a.strip_prefix(':').ok_or_else(bad_host)?)?)),
        }
    } else if s.matches(':').count() > 1 {
        // A bare IPv6 address without a port.
        (s, None)
    } else if let Some((h, p)) = s.split_once(':') {
        (h, Some(port(p)?))
    } else {
        (s, None)
    };
    if host.is_empty() || host.contains(['@', '*', '/']) {
        return Err(bad_host());
    }
    Ok((host.to_string(), p))
}

impl FromStr for MachineSpec {
    type Err = MachineSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split_whitespace();
        let first = parts.next().ok_or(MachineSpecError::Empty)?;
        let bind = parts.next();
        if let Some(t) = parts.next() {
            return Err(MachineSpecError::Trailing(t.to_string()));
        }
        let (count, rest) = match first.split_once('*') {
            Some((c, r)) => (c.parse()?, r),
            None => (Count::Fixed(1), first),
        };
        let (user, hp) = match rest.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
            Some(_) => return Err(MachineSpecError::BadHost(s.to_string())),
            None => (None, rest),
        };
        let (host, port) = host_port(hp, s)?;
        // sshd cannot listen on port 0 (a bind port of 0 means "any free port").
        if port == Some(0) {
            return Err(MachineSpecError::BadPort("0".into()));
        }
        let (bind_addr, bind_port) = match bind {
            Some(b) => {
                let (a, p) = host_port(b, s)?;
                (Some(a), p)
            }
            None => (None, None),
        };
        Ok(MachineSpec {
            count,
            user,
            host,
            port,
            bind_addr,
            bind_port,
        })
    }
}

fn fmt_host(f: &mut fmt::Formatter<'_>, h: &str, p: Option<u16>) -> fmt::Result {
    let v6 = h.contains(':');
    match (v6, p) {
        (true, Some(p)) => write!(f, "[{h}]:{p}"),
        (false, Some(p)) => write!(f, "{h}:{p}"),
        (_, None) => f.write_str(h),
    }
}

impl fmt::Display for MachineSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}*", self.count)?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        fmt_host(f, &self.host, self.port)?;
        if let Some(b) = &self.bind_addr {
            f.write_str(" ")?;
            fmt_host(f, b, self.bind_port)?;
        }
        Ok(())
    }
}

/// Parses the text of a machine file: one spec per line; blank lines and `#` comments
/// are skipped (Julia's `--machine-file`).
///
/// # Errors
/// [`MachineSpecError::File`] naming the first bad line (`origin` is used as the
/// file name in the message).
///
/// ```
/// use cohort_transport::machines::parse_machine_file;
/// let specs = parse_machine_file("# cluster\n2*node1\n\nnode2:2222 10.0.0.2  # fast\n", "hosts").unwrap();
/// assert_eq!(specs.len(), 2);
/// assert_eq!(specs[1].bind_addr.as_deref(), Some("10.0.0.2"));
/// assert!(parse_machine_file("x*node", "hosts").unwrap_err().to_string().starts_with("hosts:1:"));
/// ```
pub fn parse_machine_file(text: &str, origin: &str) -> Result<Vec<MachineSpec>, MachineSpecError> {
    let mut specs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        specs.push(line.parse().map_err(|e| MachineSpecError::File {
            path: origin.to_string(),
            line: i + 1,
            error: Box::new(e),
        })?);
    }
    Ok(specs)
}

/// Reads and parses a machine file.
///
/// # Errors
/// [`MachineSpecError::Read`] if it cannot be read; [`MachineSpecError::File`] for a
/// bad line.
///
/// ```no_run
/// let specs = cohort_transport::machines::read_machine_file("hosts.txt").unwrap();
/// ```
pub fn read_machine_file(path: impl AsRef<Path>) -> Result<Vec<MachineSpec>, MachineSpecError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| MachineSpecError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse_machine_file(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> MachineSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn an_ssh_port_of_0_is_refused_and_a_bind_port_of_0_means_any() {
        assert!(matches!(
            "node1:0".parse::<MachineSpec>(),
            Err(MachineSpecError::BadPort(p)) if p == "0"
        ));
        assert_eq!(p("node1 10.0.0.1:0").bind_port, Some(0));
    }

    #[test]
    fn plain_host() {
        let m = p("node1");
        assert_eq!(m, MachineSpec::new("node1", Count::Fixed(1)));
    }

    #[test]
    fn every_part() {
        let m = p("4*me@10.1.2.3:2200 192.168.0.5:9100");
        assert_eq!(m.count, Count::Fixed(4));
        assert_eq!(m.user.as_deref(), Some("me"));
        assert_eq!(m.host, "10.1.2.3");
        assert_eq!(m.port, Some(2200));
        assert_eq!(m.bind_addr.as_deref(), Some("192.168.0.5"));
        assert_eq!(m.bind_port, Some(9100));
        assert_eq!(m.destination(), "me@10.1.2.3");
    }

    #[test]
    fn auto_count() {
        assert_eq!(p("auto*h").count, Count::Auto);
        assert_eq!(p(":auto*h").count, Count::Auto);
    }

    #[test]
    fn ipv6() {
        let m = p("[fe80::1]:22");
        assert_eq!((m.host.as_str(), m.port), ("fe80::1", Some(22)));
        let m = p("fe80::1");
        assert_eq!((m.host.as_str(), m.port), ("fe80::1", None));
    }

    #[test]
    fn roundtrip_display() {
        for s in ["2*u@h:22 b:1", "auto*h", "1*[::1]:22"] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
    }

    #[test]
    fn errors() {
        assert_eq!("".parse::<MachineSpec>(), Err(MachineSpecError::Empty));
        assert!(matches!(
            "0*h".parse::<MachineSpec>(),
            Err(MachineSpecError::BadCount(_))
        ));
        assert!(matches!(
            "x*h".parse::<MachineSpec>(),
            Err(MachineSpecError::BadCount(_))
        ));
        assert!(matches!(
            "h:99999".parse::<MachineSpec>(),
            Err(MachineSpecError::BadPort(_))
        ));
        assert!(matches!(
            "@h".parse::<MachineSpec>(),
            Err(MachineSpecError::BadHost(_))
        ));
        assert!(matches!(
            "h b c".parse::<MachineSpec>(),
            Err(MachineSpecError::Trailing(_))
        ));
        assert!(matches!(
            "u@:22".parse::<MachineSpec>(),
            Err(MachineSpecError::BadHost(_))
        ));
    }

    #[test]
    fn machine_file() {
        let text = "\n# comment\n 2*a \nb:23 c\n";
        let v = parse_machine_file(text, "f").unwrap();
        assert_eq!(v, vec![p("2*a"), p("b:23 c")]);
        let e = parse_machine_file("a\nb:x\n", "f").unwrap_err();
        assert_eq!(e.to_string(), "f:2: bad port \"x\"");
    }
}
