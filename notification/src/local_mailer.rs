//! A [`Mailer`] that writes each mail as an `.eml` file into a folder instead of sending it,
//! for the all-in-one mode: any mail client opens the files, and the log names each one.
//!
//! Written by hand rather than with lettre's file transport, which writes in place under a
//! random name: here a mail is written to a hidden temporary file, synced, then renamed, so a
//! reader watching the folder never sees half a mail, and names (UUIDv7) sort by time.

use crate::mailer::{Mailer, SendError};
use async_trait::async_trait;
use lettre::Message;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

pub struct FileMailer {
    dir: PathBuf,
}

impl FileMailer {
    /// A mailer writing into `dir` (created when missing).
    pub async fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        tokio::fs::create_dir_all(&dir).await?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn write(&self, name: &str, contents: &[u8]) -> std::io::Result<PathBuf> {
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(name);
        let mut file = tokio::fs::File::create(&temporary).await?;
        file.write_all(contents).await?;
        file.sync_all().await?;
        drop(file);
        if let Err(e) = tokio::fs::rename(&temporary, &path).await {
            let _ = tokio::fs::remove_file(&temporary).await;
            return Err(e);
        }
        Ok(path)
    }
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, message: Message) -> Result<(), SendError> {
        let subject = message
            .headers()
            .get_raw("Subject")
            .unwrap_or_default()
            .to_owned();
        let name = format!("{}.eml", uuid::Uuid::now_v7());
        match self.write(&name, &message.formatted()).await {
            Ok(path) => {
                tracing::info!(path = %path.display(), %subject, "mail written");
                Ok(())
            }
            // A full or read-only disk may be fixed by an operator: worth retrying later.
            Err(e) => Err(SendError::Transient(format!(
                "cannot write the mail into {}: {e}",
                self.dir.display()
            ))),
        }
    }

    async fn check(&self) -> Result<(), String> {
        match tokio::fs::metadata(&self.dir).await {
            Ok(metadata) if metadata.is_dir() => Ok(()),
            Ok(_) => Err(format!("{} is not a directory", self.dir.display())),
            Err(e) => Err(format!("{}: {e}", self.dir.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_mail_becomes_one_complete_eml_file() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = FileMailer::new(dir.path().join("mail")).await.unwrap();
        mailer.check().await.unwrap();
        for subject in ["first", "second"] {
            let message = Message::builder()
                .from("MP3 Converter <no-reply@mp3converter.com>".parse().unwrap())
                .to("alice@example.com".parse().unwrap())
                .subject(subject)
                .body(format!("about {subject}"))
                .unwrap();
            mailer.send(message).await.unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(mailer.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().all(|n| n.ends_with(".eml")), "{names:?}");
        let first = std::fs::read_to_string(mailer.dir().join(&names[0])).unwrap();
        assert!(first.contains("Subject: first"), "{first}");
        assert!(first.contains("To: alice@example.com"), "{first}");
        assert!(first.contains("about first"), "{first}");
    }

    #[tokio::test]
    async fn a_missing_folder_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = FileMailer::new(dir.path().join("mail")).await.unwrap();
        std::fs::remove_dir(mailer.dir()).unwrap();
        assert!(mailer.check().await.is_err());
        let message = Message::builder()
            .from("a@example.com".parse().unwrap())
            .to("b@example.com".parse().unwrap())
            .subject("x")
            .body(String::from("x"))
            .unwrap();
        assert!(matches!(
            mailer.send(message).await,
            Err(SendError::Transient(_))
        ));
    }
}
