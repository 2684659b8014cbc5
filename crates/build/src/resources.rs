//! What the builds of one executor share, owned by it and given back when it is
//! dropped, in this order: queued removals are waited for and spare build
//! directories deleted, then the build users it kept are released.

use std::sync::Arc;

use crate::build_user::IdleUsers;
use crate::cleanup::Cleanup;

#[derive(Default)]
pub struct Resources {
    pub(crate) cleanup: Cleanup,
    pub(crate) idle_users: Arc<IdleUsers>,
}

impl Resources {
    pub fn new() -> Resources {
        Resources::default()
    }
}
