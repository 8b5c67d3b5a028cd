//! `certd store copy`: one installation's store, CA keys and data directory files into
//! an empty one (sled → PostgreSQL to move an installation; either → sled as a backup).
//! The copy itself is [`copy_installation`], which `POST /backups` uses too.

use crate::app::{copy_installation, Installation};
use crate::config::Config;
use crate::store::{DataDir, Store};

/// Copies the source installation into the target, then checks the target holds
/// exactly what was read, and prints the counts.
pub(super) fn run(
    source: (Config, DataDir, std::sync::Arc<dyn Store>),
    target: (Config, DataDir, std::sync::Arc<dyn Store>),
) -> anyhow::Result<()> {
    let (src_config, src_data, src) = source;
    let (dst_config, dst_data, dst) = target;
    let counts = copy_installation(
        &Installation {
            config: &src_config,
            data: &src_data,
            store: src.as_ref(),
        },
        &Installation {
            config: &dst_config,
            data: &dst_data,
            store: dst.as_ref(),
        },
    )?;
    dst.flush()?;
    println!(
        "copied {} to {}: {counts}; verified",
        src_data.root().display(),
        dst_data.root().display(),
    );
    Ok(())
}
