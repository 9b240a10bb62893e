//! From a gRPC request to the application layer's [`Call`]: the principal the authentication
//! layer found, the request and trace ids, and the operation the RPC is. Admission itself (role
//! and scope) is the application layer's ([`observatory_app::scope`]).

use observatory_app::Call;
pub use observatory_app::scope::{Admitted, Target};
use observatory_domain::access::Principal;
use observatory_store::Store;
use tonic::{Request, Status};

use crate::error;

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

/// The call `req` is, as the RPC the authentication layer found it was for.
pub fn call_of_rpc<T>(req: &Request<T>) -> Result<Call, Status> {
    let operation = req
        .extensions()
        .get::<crate::CallMethod>()
        .and_then(|m| observatory_app::access::operation(&m.0))
        .ok_or_else(|| Status::permission_denied("this call is for no operation of the observatory"))?;
    call(req, operation)
}

/// Admits the call `req` is (its role and scope) to `target`.
pub async fn admit<T>(store: &Store, req: &Request<T>, target: Target<'_>) -> Result<Admitted, Status> {
    let call = call_of_rpc(req)?;
    observatory_app::scope::admit(store, &call, target)
        .await
        .map_err(error::app)
}
