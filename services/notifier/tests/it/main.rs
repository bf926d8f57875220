//! notifier on real HTTP, its own database and NATS namespace, with local push provider
//! stand-ins.

mod devices;
mod openapi;
mod push;
mod stream;
mod support;
