//! The sidecar proxy, seen from inside the pod: where it says it is ready, how to ask it things,
//! and what its answers mean.

pub mod diagnosis;
pub mod envoy_admin;
pub mod envoy_clusters;
pub mod gate;
pub mod listener_trigger;
pub mod listener_watch;
pub mod mesh;
pub mod name_lookup;
pub mod narrator;
pub mod probe_schedule;
pub mod quit;
pub mod request_first;
pub mod sidecar_http;
pub mod sidecar_url;
pub mod sidecar_view;
