//! The process a container runs: argv, working directory and environment, combined from the container
//! spec, its kubelet-built environment and the image table as a container runtime combines them.

use k8s_openapi::api::core::v1::Container;
use thiserror::Error;

use crate::env::Environment;
use crate::expand::expand;
use crate::table::{ImageTable, DEFAULT_PATH};

/// What to exec for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// The program and its arguments. `argv[0]` may be a bare name (`sh`): resolve it with the `PATH`
    /// in [`Process::env`] inside the container's root, as runc does.
    pub argv: Vec<String>,
    /// The working directory inside the container's root.
    pub working_dir: String,
    /// The full environment: the image's, overridden by the container's.
    pub env: Environment,
}

/// Why a container's process could not be determined; the node shows it as the container's waiting state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The image is not in the table and the container gives no `command`.
    #[error(
        "image {image:?} is not in Pier's image table: give the container a command, or map the image in {}",
        table.display()
    )]
    NotInTable {
        /// The container's image, as written.
        image: String,
        /// The table file the user can extend.
        table: std::path::PathBuf,
    },
    /// Neither the container nor its image says what to run.
    #[error("no command specified")]
    NoCommand,
}

impl ImageError {
    /// The waiting reason the node reports: `ErrImagePull` for an unknown image, like a failed pull.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::NotInTable { .. } => "ErrImagePull",
            ImageError::NoCommand => "CreateContainerError",
        }
    }
}

/// Builds the process for `container`, whose kubelet environment is `env` (see
/// [`container_env`](crate::container_env)).
///
/// `command` replaces the image's ENTRYPOINT and `args` its CMD; with `command` set and `args` unset the
/// image's CMD is not used. `$(VAR)` in `command` and `args` is expanded with `env` (not the image's
/// variables, as upstream). The working directory is the container's `workingDir`, else the image's,
/// else `/`. The image is consulted only when `command` is empty, so any image works with a command.
pub fn process_for(
    container: &Container,
    env: &Environment,
    table: &ImageTable,
) -> Result<Process, ImageError> {
    let lookup = |name: &str| env.get(name).map(str::to_string);
    let command: Vec<String> = container.command.iter().flatten().map(|c| expand(c, lookup)).collect();
    let args: Vec<String> = container.args.iter().flatten().map(|a| expand(a, lookup)).collect();
    let image_name = container.image.as_deref().unwrap_or_default();

    let image = if command.is_empty() {
        let found = table.lookup(image_name).ok_or_else(|| ImageError::NotInTable {
            image: image_name.to_string(),
            table: table.file().to_path_buf(),
        })?;
        Some(found)
    } else {
        // The image does not matter for what runs, but its variables and workdir still apply.
        table.lookup(image_name)
    };

    let argv = match (&image, command.is_empty()) {
        (Some(image), true) => {
            let rest = if args.is_empty() { image.cmd.clone() } else { args };
            image.entrypoint.iter().cloned().chain(rest).collect()
        }
        _ => command.into_iter().chain(args).collect::<Vec<_>>(),
    };
    if argv.is_empty() {
        return Err(ImageError::NoCommand);
    }

    let working_dir = container
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.as_ref().and_then(|i| i.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string());

    let mut full = Environment::new();
    match &image {
        Some(image) => image.env.iter().for_each(|(k, v)| full.set(k.clone(), v.clone())),
        None => full.set("PATH", DEFAULT_PATH),
    }
    for (k, v) in env.iter() {
        full.set(k, v);
    }
    Ok(Process { argv, working_dir, env: full })
}
