//! Integration tests against the real services (Redis, MariaDB, RabbitMQ on loopback).
//!
//! One binary with a module per area, so the crate links once. Every test spawns its own app
//! on a random port against a fresh database and its own Redis key namespace ([`helpers`]), so
//! the tests run in parallel and leave nothing behind.

mod admission;
mod audit;
mod bound_paths;
mod catalogue;
mod cluster;
mod contract;
mod db;
mod degrade;
mod draws;
mod events;
mod ha;
mod hardening;
mod helpers;
mod history;
mod limits;
mod lua_contract;
mod lua_release;
mod manage;
mod nginx;
mod observability;
mod openapi;
mod passwords;
mod proxy;
mod push;
mod restart;
mod room;
mod scale;
mod seams;
mod security;
mod shop_identity;
mod split;
mod worker;
