//! Integration tests of the DNS server: serving the zone, forwarding and the
//! cache against stub upstreams, and the whole server against an in-process API
//! server. Every socket is on the loopback interface.

mod cluster;
mod forwarding;
mod serving;
mod support;
