//! The header fields reprise itself adds to calls and answers: one name
//! each, shared by the replayer, the mocks, the proxy and the comparison.

/// On every replayed call: the recorded exchange's id, in hex. Mocks scope
/// the call's downstream calls by it, and the comparison ignores it.
pub const REPLAY_HEADER: &str = "x-reprise-replay";

/// On an inbound response in mock mode: how many of the call's downstream
/// calls the mocks could not answer (absent when none). A service that
/// swallows a failed downstream call still answers differently from the
/// recording, so a replay with misses never looks clean.
pub const MISSES_HEADER: &str = "x-reprise-mock-misses";

/// On an inbound response in mock mode: how many downstream calls recorded
/// under the replayed exchange the call had not made when its response
/// head was sent (absent when none): a call the new build no longer makes
/// is a difference too.
pub const UNUSED_HEADER: &str = "x-reprise-mock-unused";

/// On an inbound response in mock mode: each downstream call the mocks
/// could not answer, named `METHOD authority/path?query` (one field per
/// call, the first 16): the calls the new build makes that the recording
/// never saw, so `reprise diff` names them.
pub const NEW_CALLS_HEADER: &str = "x-reprise-mock-new";

/// On an inbound response in mock mode: each downstream call recorded
/// under the replayed exchange that the call had not made, named (one
/// field per call, the first 16): the calls the new build no longer makes.
pub const MISSING_CALLS_HEADER: &str = "x-reprise-mock-missing";

/// On a mock's answer (header, or trailer of a live stream) to a call it
/// could not match: `1`. The answer is the mock's, not a recorded one.
pub const MOCK_MISS_HEADER: &str = "x-reprise-mock-miss";

/// On `reprise mock`'s answer to a call that went on to the real service
/// (`--fallthrough`): `1`.
pub const MOCK_FALLTHROUGH_HEADER: &str = "x-reprise-mock-fallthrough";

/// On `reprise mock`'s own answer when it could not answer at all (the
/// request body broke off, a recorded failure, a refused fall-through):
/// `1`.
pub const MOCK_FAILURE_HEADER: &str = "x-reprise-mock-failure";

/// On the proxy's own answer (not the upstream's): `request` when the
/// client's request was at fault, `upstream` when the upstream was.
pub const PROXY_ERROR_HEADER: &str = "x-reprise-error";
