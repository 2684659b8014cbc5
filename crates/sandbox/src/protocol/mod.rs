//! What crosses between the three processes of a sandboxed build, and nothing
//! else: the caller (`caller/`), the long-lived helper (`helper/`) and the
//! sandboxed child (`child/`) share only these encodings, so each side can be
//! read without the others.
//!
//! * how an executable is told to be the helper ([`HELPER_ARG`], [`FILTERED_ARG`])
//!   and how it says it is ready ([`READY_LINE`]);
//! * the plan the caller resolves and the helper and child execute (`plan`);
//! * the request framing on the helper's socket, also used from the helper to a
//!   spare child (`request`);
//! * the status pipe from the helper and the child back to the caller (`status`);
//! * how the store inputs travel on `go` ([`TREES_PER_MESSAGE`]).

pub(crate) mod plan;
pub(crate) mod request;
pub(crate) mod status;

use plan::{flags, Plan};

/// The argument that makes an executable run [`crate::helper_main`].
pub const HELPER_ARG: &str = "__kiln-sandbox-helper";

/// The second argument of the helper that filters its own syscalls.
pub(crate) const FILTERED_ARG: &str = "filtered";

/// Which helper serves a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum HelperKind {
    /// Clones unfiltered children, which install whatever filter their plan asks for.
    Plain,
    /// Filters its own syscalls, without new privileges; its children inherit that.
    Filtered,
}

impl HelperKind {
    pub(crate) fn for_plan(filter_syscalls: bool, allow_new_privileges: bool) -> HelperKind {
        if filter_syscalls && !allow_new_privileges {
            HelperKind::Filtered
        } else {
            HelperKind::Plain
        }
    }

    pub(crate) fn of_plan(plan: &Plan) -> HelperKind {
        HelperKind::for_plan(
            plan.has(flags::FILTER_SYSCALLS),
            plan.has(flags::ALLOW_NEW_PRIVILEGES),
        )
    }
}

/// The line a helper writes on its socket once it is ready for requests.
pub(crate) const READY_LINE: &[u8] = b"kiln-sandbox-helper 1 ready\n";

/// Descriptors per message when the caller sends the store inputs' detached
/// mounts on `go` (the child reads as many per message).
pub(crate) const TREES_PER_MESSAGE: usize = 32;
