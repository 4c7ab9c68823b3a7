//! Where backups are kept: a local directory or an S3-compatible bucket, behind one
//! [`object_store`] interface. Objects are written with multipart uploads (a local directory
//! writes a staging file and renames it, so a half-written object never has the final name).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// A multipart part: S3's smallest allowed part is 5 MiB.
const PART_SIZE: usize = 8 << 20;
/// Parts uploaded at once; with [`PART_SIZE`] this bounds the upload's memory.
const PARTS_IN_FLIGHT: usize = 2;

/// Where a backup target lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on this server (created with mode 0700 when missing).
    Local(PathBuf),
    /// `s3://bucket/prefix` with the settings from the app's secrets.
    S3 {
        bucket: String,
        prefix: String,
        settings: S3Settings,
    },
}

/// S3 settings, from the app's secrets (`S3_ENDPOINT`, `S3_REGION`, `S3_ACCESS_KEY_ID`,
/// `S3_SECRET_ACCESS_KEY`, `S3_PATH_STYLE`). `Debug` never shows the secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// Default AWS (`https://s3.REGION.amazonaws.com`).
    pub endpoint: Option<String>,
    /// Default `us-east-1`.
    pub region: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Path-style requests (`ENDPOINT/bucket/key`), which S3-compatible servers need; the
    /// default when an endpoint is given.
    pub path_style: Option<bool>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(dir) => write!(f, "{}", dir.display()),
            Location::S3 { bucket, prefix, .. } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix, .. } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// An opened backup target.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    shown: String,
    /// A local target's directory: its unfinished uploads are staging files there.
    local: Option<PathBuf>,
}

/// An error of the storage, with the target it came from.
pub type Error = object_store::Error;

/// What an upload's producer sends.
pub enum Chunk {
    Data(Bytes),
    /// Everything was produced and checked: complete the upload. A channel that closes
    /// without this aborts the upload.
    End,
}

impl Storage {
    pub fn open(location: &Location) -> Result<Storage, String> {
        let shown = location.to_string();
        let (store, prefix): (Arc<dyn ObjectStore>, ObjectPath) = match location {
            Location::Local(dir) => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| format!("create {}: {e}", dir.display()))?;
                let fs = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| format!("open {}: {e}", dir.display()))?
                    .with_automatic_cleanup(true);
                (Arc::new(fs), ObjectPath::default())
            }
            Location::S3 {
                bucket,
                prefix,
                settings,
            } => {
                install_crypto_provider();
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_access_key_id(&settings.access_key_id)
                    .with_secret_access_key(&settings.secret_access_key)
                    .with_region(settings.region.as_deref().unwrap_or("us-east-1"))
                    .with_retry(RetryConfig {
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(30),
                        ..RetryConfig::default()
                    })
                    .with_client_options(
                        ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(10))
                            .with_timeout(Duration::from_secs(120))
                            .with_allow_http(true),
                    );
                if let Some(endpoint) = &settings.endpoint {
                    b = b.with_endpoint(endpoint);
                }
                let path_style = settings.path_style.unwrap_or(settings.endpoint.is_some());
                b = b.with_virtual_hosted_style_request(!path_style);
                let s3 = b.build().map_err(|e| format!("{shown}: {e}"))?;
                (Arc::new(s3), ObjectPath::from(prefix.as_str()))
            }
        };
        let local = match location {
            Location::Local(dir) => Some(dir.clone()),
            Location::S3 { .. } => None,
        };
        Ok(Storage {
            store,
            prefix,
            shown,
            local,
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        let mut path = self.prefix.clone();
        for part in key.split('/') {
            path = path.clone().join(part);
        }
        path
    }

    /// `s3://bucket/prefix/KEY` or `/dir/KEY`, for messages.
    pub fn show(&self, key: &str) -> String {
        format!("{}/{key}", self.shown.trim_end_matches('/'))
    }

    /// `s3://bucket/prefix/KEY: what went wrong`, with every cause of `err`.
    pub fn describe(&self, key: &str, err: &Error) -> String {
        format!("{}: {}", self.show(key), crate::failure::causes(err))
    }

    /// Uploads what arrives on `chunks` to `key`, as a multipart upload completed only on
    /// [`Chunk::End`] (`Ok(true)`); a channel closed before that aborts it (`Ok(false)`), as
    /// does an error, so no partial object remains.
    pub async fn upload(
        &self,
        key: &str,
        mut chunks: mpsc::Receiver<Chunk>,
    ) -> Result<bool, Error> {
        let upload = self.store.put_multipart(&self.path(key)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        loop {
            match chunks.recv().await {
                Some(Chunk::Data(bytes)) => {
                    if let Err(err) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                        let _ = writer.abort().await;
                        return Err(err);
                    }
                    writer.put(bytes);
                }
                Some(Chunk::End) => {
                    writer.finish().await?;
                    return Ok(true);
                }
                None => {
                    let _ = writer.abort().await;
                    return Ok(false);
                }
            }
        }
    }

    /// The sha256 and size of the object at `key`, read back from the storage.
    pub async fn digest(&self, key: &str) -> Result<(String, u64), Error> {
        let mut stream = self.store.get(&self.path(key)).await?.into_stream();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(bytes) = stream.next().await {
            let bytes = bytes?;
            size += bytes.len() as u64;
            hasher.update(&bytes);
        }
        Ok((hex::encode(hasher.finalize()), size))
    }

    /// The object at `key` as a stream of chunks.
    pub async fn read(
        &self,
        key: &str,
    ) -> Result<futures_util::stream::BoxStream<'static, Result<Bytes, Error>>, Error> {
        Ok(self.store.get(&self.path(key)).await?.into_stream())
    }

    /// A small object (a manifest), written whole.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), Error> {
        self.store.put(&self.path(key), bytes.into()).await?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, Error> {
        self.store.get(&self.path(key)).await?.bytes().await
    }

    /// Deletes `key`; an object already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The keys under `dir` (relative to the target, e.g. `nightly/…`).
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, Error> {
        let base = self.path(dir);
        let mut out = Vec::new();
        let mut stream = self.store.list(Some(&base));
        while let Some(meta) = stream.next().await {
            let meta = meta?;
            let full = meta.location.as_ref();
            let rel = full
                .strip_prefix(self.prefix.as_ref())
                .unwrap_or(full)
                .trim_start_matches('/');
            out.push(rel.to_owned());
        }
        out.sort();
        Ok(out)
    }
}

impl Storage {
    /// Removes the staging files of uploads a stopped process left in `dir` of a local target
    /// (`KEY#N`, as object_store names them); returns how many. S3 keeps such parts out of
    /// sight until the bucket's lifecycle rule for incomplete multipart uploads removes them.
    pub fn remove_staging(&self, dir: &str) -> usize {
        let Some(root) = &self.local else { return 0 };
        let mut removed = 0;
        for entry in std::fs::read_dir(root.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().contains('#')
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }
}

/// object_store's HTTP client (reqwest with rustls) needs a process-wide crypto provider; berth
/// builds with ring only.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
