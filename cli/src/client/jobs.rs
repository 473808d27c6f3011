//! Jobs: `GET /jobs` (a page), `GET /jobs/{id}` and `DELETE /jobs/{id}`.

use super::{ApiClient, ClientError, json_body, typed};
use api::{JobList, JobView};
use serde_json::Value;

/// A job as the server shows it: the contract's [`JobView`] for what the CLI acts on, and
/// `raw`, every field as sent, for `--json` (a newer server's extra fields included).
#[derive(Debug, Clone)]
pub struct Job {
    pub view: JobView,
    pub raw: Value,
}

impl Job {
    pub fn from_value(raw: Value) -> Result<Self, ClientError> {
        Ok(Self::new(typed(raw.clone(), "job")?, raw))
    }

    pub(crate) fn new(mut view: JobView, raw: Value) -> Self {
        // A percentage, whatever a confused server says: bars and tables count on it.
        view.progress = view.progress.min(100);
        Job { view, raw }
    }

    pub fn id(&self) -> &str {
        &self.view.job_id
    }
}

/// One page of `GET /jobs`.
#[derive(Debug)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Whether an older page exists.
    pub has_more: bool,
}

impl ApiClient {
    /// `GET /jobs?limit=&before=`.
    pub async fn jobs(
        &self,
        token: &str,
        limit: u32,
        before: Option<&str>,
    ) -> Result<JobPage, ClientError> {
        let mut url = self.url(&["jobs"]);
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string());
        if let Some(before) = before {
            url.query_pairs_mut().append_pair("before", before);
        }
        let body = json_body(self.send(self.http.get(url).bearer_auth(token)).await?).await?;
        let raw_jobs = body
            .get("jobs")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| ClientError::Protocol("the job list has no jobs array".into()))?;
        let list: JobList = typed(body, "job list")?;
        let jobs = list
            .jobs
            .into_iter()
            .zip(raw_jobs)
            .map(|(view, raw)| Job::new(view, raw))
            .collect();
        Ok(JobPage {
            jobs,
            has_more: list.next.is_some(),
        })
    }

    /// `GET /jobs/{id}`.
    pub async fn job(&self, token: &str, id: &str) -> Result<Job, ClientError> {
        let request = self.http.get(self.url(&["jobs", id])).bearer_auth(token);
        Job::from_value(json_body(self.send(request).await?).await?)
    }

    /// `DELETE /jobs/{id}`.
    pub async fn delete(&self, token: &str, id: &str) -> Result<(), ClientError> {
        let request = self.http.delete(self.url(&["jobs", id])).bearer_auth(token);
        self.send(request).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::JobStatus;

    #[test]
    fn jobs_parse_with_unknown_statuses_and_extra_fields() {
        let job = Job::from_value(serde_json::json!({
            "job_id": "j", "status": "archived", "progress": 250, "new_field": 1,
            "submitted_at": "2025-01-02T03:04:05Z"
        }))
        .unwrap();
        assert_eq!(job.view.status, JobStatus::Unknown);
        assert!(job.view.status.is_terminal());
        assert_eq!(job.view.progress, 100);
        assert_eq!(job.raw["new_field"], 1);
        assert!(job.view.submitted_at.is_some());
        assert!(Job::from_value(serde_json::json!({"status": "failed"})).is_err());
    }
}
