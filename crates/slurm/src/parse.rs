//! Reading srun's output: task labels (`srun --label`), the lines the task wrapper
//! prints, and srun's own messages. Pure functions, tested without Slurm.

/// The line the task wrapper prints first, before it runs the worker:
/// `cohort_slurm_task:JOB.STEP@NODE`.
pub(crate) const TASK_PREFIX: &str = "cohort_slurm_task:";

/// The line the task wrapper prints when the worker has exited: `cohort_slurm_exit:STATUS`.
pub(crate) const EXIT_PREFIX: &str = "cohort_slurm_exit:";

/// The shell script every task runs (`sh -c SCRIPT cohort-slurm-task EXE ARGS…`): it
/// says where it runs, runs the worker (which inherits stdin, where srun's
/// `--input=all` puts the cookie) with `COHORT_HOSTNAME` set to the node name (so
/// that the worker groups processes by Slurm node too), and says how it ended. Only
/// Slurm's own variables are expanded; the worker's command line is `"$@"`, never
/// reparsed.
pub(crate) const TASK_SCRIPT: &str = concat!(
    r#"printf 'cohort_slurm_task:%s.%s@%s\n' "$SLURM_JOB_ID" "${SLURM_STEP_ID:-$SLURM_STEPID}" "$SLURMD_NODENAME"; "#,
    r#"COHORT_HOSTNAME="$SLURMD_NODENAME" "$@"; s=$?; printf 'cohort_slurm_exit:%s\n' "$s"; exit "$s""#
);

/// Splits a `srun --label` line (`3: text`, `12: text`, ` 3: text`) into the task
/// number and the text. `None` for a line without a label (srun's own messages).
pub(crate) fn split_label(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start();
    let (num, rest) = trimmed.split_once(':')?;
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let task = num.parse().ok()?;
    Some((task, rest.strip_prefix(' ').unwrap_or(rest)))
}

/// What the wrapper's first line says: `(job, step, node)`.
pub(crate) fn parse_task_line(text: &str) -> Option<(String, String, String)> {
    let rest = text.trim_end().strip_prefix(TASK_PREFIX)?;
    let (ids, node) = rest.split_once('@')?;
    let (job, step) = ids.split_once('.')?;
    (!job.is_empty() && !node.is_empty())
        .then(|| (job.to_string(), step.to_string(), node.to_string()))
}

/// The exit status in the wrapper's last line.
pub(crate) fn parse_exit_line(text: &str) -> Option<i32> {
    text.trim_end().strip_prefix(EXIT_PREFIX)?.parse().ok()
}

/// The job id in srun's messages about a job it requested: `srun: job 12 queued and
/// waiting for resources`, `srun: job 12 has been allocated resources`,
/// `srun: Granted job allocation 12`.
pub(crate) fn job_id_in_srun_message(line: &str) -> Option<String> {
    let rest = line.trim().strip_prefix("srun:")?.trim_start();
    let rest = rest
        .strip_prefix("job ")
        .or_else(|| rest.strip_prefix("Granted job allocation "))?;
    let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!id.is_empty()).then_some(id)
}

/// Whether an unlabelled srun line is an error (what a refusal is made of).
pub(crate) fn is_srun_error(line: &str) -> bool {
    let l = line.trim_start();
    l.starts_with("srun: error:") || l.starts_with("srun: fatal:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(split_label("0: hello"), Some((0, "hello")));
        assert_eq!(split_label(" 3: a: b"), Some((3, "a: b")));
        assert_eq!(split_label("12: "), Some((12, "")));
        assert_eq!(split_label("12:"), Some((12, "")));
        assert_eq!(split_label("srun: error: x"), None);
        assert_eq!(split_label("hello"), None);
        assert_eq!(split_label(": x"), None);
    }

    #[test]
    fn wrapper_lines() {
        assert_eq!(
            parse_task_line("cohort_slurm_task:17.0@node-a1"),
            Some(("17".into(), "0".into(), "node-a1".into()))
        );
        assert_eq!(parse_task_line("cohort_slurm_task:17.0@"), None);
        assert_eq!(parse_task_line("cohort_worker:9000#h"), None);
        assert_eq!(parse_exit_line("cohort_slurm_exit:0"), Some(0));
        assert_eq!(parse_exit_line("cohort_slurm_exit:137\n"), Some(137));
        assert_eq!(parse_exit_line("cohort_slurm_exit:x"), None);
    }

    #[test]
    fn srun_messages() {
        assert_eq!(
            job_id_in_srun_message("srun: job 4 queued and waiting for resources"),
            Some("4".into())
        );
        assert_eq!(
            job_id_in_srun_message("srun: job 4 has been allocated resources"),
            Some("4".into())
        );
        assert_eq!(
            job_id_in_srun_message("srun: Granted job allocation 42"),
            Some("42".into())
        );
        assert_eq!(job_id_in_srun_message("srun: error: x"), None);
        assert!(is_srun_error(
            "srun: error: Unable to allocate resources: Invalid partition name specified"
        ));
        assert!(!is_srun_error(
            "srun: job 4 queued and waiting for resources"
        ));
    }

    #[test]
    fn the_script_names_no_secret_and_reparses_nothing() {
        assert!(TASK_SCRIPT.contains(r#""$@""#));
        assert!(!TASK_SCRIPT.contains("eval"));
        assert!(TASK_SCRIPT.starts_with("printf 'cohort_slurm_task:"));
    }
}
