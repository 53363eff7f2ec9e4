//! What a process costs, read from Linux's `/proc`: resident memory, CPU
//! time, and the open-file limit a scenario with many sockets needs.

/// Resident set size and its peak (KiB) of `pid`: `VmRSS` and `VmHWM`.
pub fn memory_kib(pid: u32) -> Result<(u64, u64), String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .ok_or_else(|| format!("{path}: no {name}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU seconds (user + system) `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // Fields after the command name (which may hold spaces, hence rsplit on ')').
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("{path}: unexpected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("{path}: no field {i}"))
    };
    // USER_HZ is 100 on every Linux this runs on (sysconf(_SC_CLK_TCK)).
    Ok((ticks(14)? + ticks(15)?) as f64 / 100.0)
}

/// The soft limit of open files of this process (`ulimit -n`).
pub fn open_file_limit() -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/self/limits").map_err(|e| e.to_string())?;
    text.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .ok_or_else(|| "/proc/self/limits: no `Max open files`".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let (rss, peak) = memory_kib(pid).unwrap();
        assert!(rss > 0 && peak >= rss);
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(open_file_limit().unwrap() > 0);
    }
}
