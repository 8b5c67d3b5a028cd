//! `local`: the environment's own issuing CA, in process. Always ready; answers at once.

use std::sync::Arc;

use super::{Issuer, OrderRequest, Outcome, PluginMeta};
use crate::ca::{CaPair, Clock, Profile, ProfileKind, Rng};

/// The built-in CA.
pub struct Local {
    ca: CaPair,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn Rng>,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local").field("ca", &self.ca).finish()
    }
}

impl Local {
    /// Signs with `ca`.
    pub fn new(ca: CaPair, clock: Arc<dyn Clock>, rng: Arc<dyn Rng>) -> Self {
        Local { ca, clock, rng }
    }
}

impl Issuer for Local {
    fn issue(&self, req: &OrderRequest<'_>, _meta: &mut PluginMeta) -> Outcome {
        let profile = Profile::new(ProfileKind::Agent, req.validity);
        let signed = self.ca.sign_leaf(
            &req.csr.subject(),
            req.csr.public_key(),
            &profile,
            self.clock.as_ref(),
            self.rng.as_ref(),
        );
        match signed {
            Ok(cert_der) => Outcome::Issued { cert_der },
            Err(e) => Outcome::Failed {
                message: e.to_string(),
            },
        }
    }

    fn check(&self, req: &OrderRequest<'_>, meta: &mut PluginMeta) -> Outcome {
        self.issue(req, meta)
    }

    fn in_process(&self) -> bool {
        true
    }
}
