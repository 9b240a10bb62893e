//! From a gRPC request to the application layer's [`Call`]: the principal the authentication
//! layer found, the request and trace ids, and the operation the RPC is. Admission (role and
//! scope) is the application layer's ([`observatory_app::scope`]), made by every operation.

use observatory_app::Call;
use observatory_domain::access::Principal;
use tonic::{Request, Status};

/// The caller of a request, as the authentication layer found it.
pub fn principal<T>(req: &Request<T>) -> Result<&Principal, Status> {
    // The layer refuses every call to these services that carries no valid token, so a missing
    // principal means the service was mounted without it: refused rather than served anonymously.
    req.extensions()
        .get::<Principal>()
        .ok_or_else(|| Status::unauthenticated("no authenticated principal"))
}

/// The call `req` is, as operation `operation` (`RegisterPatient`).
pub fn call<T>(req: &Request<T>, operation: &'static str) -> Result<Call, Status> {
    let (request_id, trace_id) = crate::request_ids(req);
    Ok(Call::new(principal(req)?.clone(), operation, request_id, trace_id))
}
