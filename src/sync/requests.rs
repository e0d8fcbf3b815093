//! What an ExternalSecret needs from its store, as provider requests.

use std::collections::BTreeSet;

use crate::api::{
    ExternalSecretData, ExternalSecretDataFrom, ExternalSecretSpec, FindRef, MetadataPolicy,
    RemoteRef,
};
use crate::provider::{FindQuery, RemoteRequest};

/// The distinct requests one ExternalSecret needs. A driver unions these over
/// every ExternalSecret due for refresh on a store and fetches them in one batch.
pub fn remote_requests(spec: &ExternalSecretSpec) -> BTreeSet<RemoteRequest> {
    let data = spec.data.iter().map(data_request);
    let data_from = spec.data_from.iter().filter_map(data_from_request);
    data.chain(data_from).collect()
}

/// What one `data[]` entry reads.
pub fn data_request(item: &ExternalSecretData) -> RemoteRequest {
    value_request(&item.remote_ref)
}

/// What one `dataFrom[]` entry reads (`None` for an entry with neither
/// `extract` nor `find`, which validation rejects).
pub fn data_from_request(item: &ExternalSecretDataFrom) -> Option<RemoteRequest> {
    match (&item.extract, &item.find) {
        (Some(extract), _) => Some(value_request(extract)),
        (None, Some(find)) => Some(find_request(find)),
        (None, None) => None,
    }
}

pub(crate) fn value_request(remote: &RemoteRef) -> RemoteRequest {
    if remote.metadata_policy == Some(MetadataPolicy::Fetch) {
        return RemoteRequest::Tags {
            key: remote.key.clone(),
        };
    }
    RemoteRequest::Value {
        key: remote.key.clone(),
        version: remote.version.clone(),
    }
}

pub(crate) fn find_request(find: &FindRef) -> RemoteRequest {
    RemoteRequest::Find(FindQuery {
        path: find.path.clone(),
        name_regexp: find.name.as_ref().map(|n| n.regexp.clone()),
        tags: find.tags.clone(),
    })
}
