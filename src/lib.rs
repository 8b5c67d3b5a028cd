pub mod ca;
pub mod store;
