//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds them at compile time
//! (MySQL's from `migrations/mysql/`, SQLite's from `migrations/sqlite/`).
fn main() {
    println!("cargo:rerun-if-changed=migrations/mysql");
    println!("cargo:rerun-if-changed=migrations/sqlite");
}
