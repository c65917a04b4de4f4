//! The image table: what each image runs, since Pier never pulls images (a container's root filesystem
//! is an overlay of the host's, so its programs are the host's).
//!
//! The built-in entries cover the images the Kubernetes books and docs use. The node's data directory may
//! hold an `images.yaml` that adds entries or overrides built-in ones:
//!
//! ```yaml
//! images:
//!   # A reference or pattern: `*` matches anything; a leading `*` matches the fully qualified name
//!   # (`*/web` matches docker.io/anyone/web); no tag matches every tag.
//!   - image: example.com/team/web
//!     entrypoint: ["python3", "-m", "http.server"]   # the image's ENTRYPOINT (optional)
//!     cmd: ["8080"]                                  # the image's CMD (optional)
//!     workingDir: /srv                               # optional, default /
//!     env: ["GREETING=hello"]                        # optional, on top of the default PATH
//!   - image: "*/my-kubia"
//!     entrypoint: ["{pier}", "app", "kubia"]         # {pier} is the path of the pier executable
//! ```
//!
//! When several entries match, entries from the file beat built-in ones, then the most specific wins
//! (see [`Pattern::specificity`]), then the first written.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::reference::{Pattern, Reference};

/// The file name of the table's extension in the node's data directory.
pub const TABLE_FILE: &str = "images.yaml";

/// The token in an entry's `entrypoint` or `cmd` that stands for the pier executable.
pub const PIER_TOKEN: &str = "{pier}";

/// The `PATH` every container starts with unless its image sets another (containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What an image runs: the parts of an OCI image config Pier uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// ENTRYPOINT, with [`PIER_TOKEN`] already replaced.
    pub entrypoint: Vec<String>,
    /// CMD, with [`PIER_TOKEN`] already replaced.
    pub cmd: Vec<String>,
    /// WORKDIR, if the image sets one.
    pub working_dir: Option<String>,
    /// ENV, in order (`PATH` first).
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct Entry {
    pattern: Pattern,
    from_file: bool,
    config: ImageConfig,
}

/// Maps image references to what they run.
#[derive(Debug, Clone)]
pub struct ImageTable {
    entries: Vec<Entry>,
    file: PathBuf,
    self_exe: String,
}

/// A table file that could not be read or is not valid.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TableError {
    /// The file exists but could not be read.
    #[error("reading image table {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid; the message names the field, line and column.
    #[error("invalid image table {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (e.g. `images[1]: unknown field `cmds` ... at line 4 column 5`).
        message: String,
    },
}

impl ImageTable {
    /// The built-in table only. `data_dir` is where the node would keep `images.yaml` (named in messages);
    /// `self_exe` is the pier executable that runs the built-in apps.
    pub fn builtin(data_dir: &Path, self_exe: &Path) -> Self {
        let self_exe = self_exe.to_string_lossy().into_owned();
        let entries = builtin_entries()
            .into_iter()
            .map(|(p, c)| Entry { pattern: Pattern::parse(&p), from_file: false, config: c })
            .collect();
        ImageTable { entries, file: data_dir.join(TABLE_FILE), self_exe }
    }

    /// The built-in table plus `<data_dir>/images.yaml` if that file exists.
    pub fn load(data_dir: &Path, self_exe: &Path) -> Result<Self, TableError> {
        let mut table = Self::builtin(data_dir, self_exe);
        let path = table.file.clone();
        match std::fs::read_to_string(&path) {
            Ok(text) => table.add_yaml(&text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(TableError::Read { path, source }),
        }
        Ok(table)
    }

    /// Adds the entries of a table file's contents (see the module docs for the format).
    pub fn add_yaml(&mut self, text: &str) -> Result<(), TableError> {
        let invalid = |message: String| TableError::Invalid { path: self.file.clone(), message };
        if text.trim().is_empty() {
            return Ok(());
        }
        let file: FileFormat = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for raw in file.images {
            let config = ImageConfig {
                entrypoint: raw.entrypoint,
                cmd: raw.cmd,
                working_dir: raw.working_dir,
                env: default_env().into_iter().chain(raw.env.into_iter().map(|v| (v.0, v.1))).collect(),
            };
            self.entries.push(Entry { pattern: Pattern::parse(&raw.image.0), from_file: true, config });
        }
        Ok(())
    }

    /// Where the table's file lives (whether or not it exists).
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// What `image` runs, or `None` when no entry matches.
    pub fn lookup(&self, image: &str) -> Option<ImageConfig> {
        let reference = Reference::parse(image);
        let best = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.pattern.matches(&reference))
            // Later entries lose ties: the reversed index makes the first-written one the maximum.
            .max_by_key(|(i, e)| (e.from_file, e.pattern.specificity(), std::cmp::Reverse(*i)))?;
        let mut config = best.1.config.clone();
        for arg in config.entrypoint.iter_mut().chain(config.cmd.iter_mut()) {
            if arg == PIER_TOKEN {
                arg.clone_from(&self.self_exe);
            }
        }
        let mut env = crate::Environment::new();
        for (k, v) in config.env.drain(..) {
            env.set(k, v);
        }
        config.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Some(config)
    }
}

fn default_env() -> Vec<(String, String)> {
    vec![("PATH".to_string(), DEFAULT_PATH.to_string())]
}

fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The real curlimages/curl entrypoint's rule: run `curl` with the arguments when the first one is an
/// option or not a command, else run the arguments as a command.
const CURL_ENTRYPOINT: &str =
    r#"if [ "${1#-}" != "$1" ] || [ -z "$(command -v "$1")" ]; then set -- curl "$@"; fi; exec "$@""#;

fn builtin_entries() -> Vec<(String, ImageConfig)> {
    let app = |args: &[&str]| ImageConfig {
        entrypoint: [PIER_TOKEN, "app"].iter().chain(args).map(|s| s.to_string()).collect(),
        env: default_env(),
        ..Default::default()
    };
    let cmd = |args: &[&str]| ImageConfig { cmd: argv(args), env: default_env(), ..Default::default() };
    let mut entries: Vec<(String, ImageConfig)> = [
        ("luksa/kubia", app(&["kubia"])),
        ("*/kubia", app(&["kubia"])),
        ("luksa/kubia-unhealthy", app(&["kubia-unhealthy"])),
        ("*/kubia-unhealthy", app(&["kubia-unhealthy"])),
        ("registry.k8s.io/pause", app(&["pause"])),
        ("k8s.gcr.io/pause", app(&["pause"])),
        ("gcr.io/google_containers/pause", app(&["pause"])),
        // Pier's own: a UDP server answering `<hostname> <payload>` (and its client, `--client`).
        ("pier/udp-echo", app(&["udp-echo"])),
        ("busybox", cmd(&["sh"])),
        ("registry.k8s.io/busybox", cmd(&["sh"])),
        ("k8s.gcr.io/busybox", cmd(&["sh"])),
        ("alpine", cmd(&["sh"])),
        ("debian", cmd(&["sh"])),
        ("ubuntu", cmd(&["sh"])),
        ("tutum/dnsutils", cmd(&["sleep", "infinity"])),
        (
            "curlimages/curl",
            ImageConfig {
                entrypoint: argv(&["/bin/sh", "-c", CURL_ENTRYPOINT, "curl-entrypoint"]),
                cmd: argv(&["curl"]),
                env: default_env(),
                ..Default::default()
            },
        ),
    ]
    .into_iter()
    .map(|(pattern, config)| (pattern.to_string(), config))
    .collect();
    // The book's rolling-update chapter tags kubia v1 to v4 (v3 starts failing after four requests).
    for version in ["v1", "v2", "v3", "v4"] {
        for name in ["luksa/kubia", "*/kubia"] {
            entries.push((format!("{name}:{version}"), app(&["kubia", "--version", version])));
        }
    }
    entries
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    images: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEntry {
    image: ImageName,
    #[serde(default)]
    entrypoint: Vec<String>,
    #[serde(default)]
    cmd: Vec<String>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    env: Vec<EnvEntry>,
}

/// A non-empty image pattern; checked while parsing so the error carries the line.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct ImageName(String);

impl TryFrom<String> for ImageName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value.trim().is_empty() || value.contains(char::is_whitespace) {
            return Err(format!("image {value:?} is not an image reference or pattern"));
        }
        Ok(ImageName(value))
    }
}

/// One `NAME=value` entry; checked while parsing so the error carries the line.
#[derive(Deserialize)]
#[serde(try_from = "String")]
struct EnvEntry(String, String);

impl TryFrom<String> for EnvEntry {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.split_once('=') {
            Some((name, v)) if !name.is_empty() => Ok(EnvEntry(name.to_string(), v.to_string())),
            _ => Err(format!("env entry {value:?} is not NAME=value")),
        }
    }
}
