//! Integration tests against the real services (Redis, MariaDB, RabbitMQ on loopback).
//!
//! One binary with a module per area, so the crate links once. Every test spawns its own app
//! on a random port against a fresh database and its own Redis key namespace ([`helpers`]), so
//! the tests run in parallel and leave nothing behind.

mod admission;
mod catalogue;
mod cluster;
mod degrade;
mod hardening;
mod helpers;
mod lua_admit;
mod nginx;
mod observability;
mod openapi;
mod proxy;
mod restart;
mod scale;
mod split;
mod worker;
