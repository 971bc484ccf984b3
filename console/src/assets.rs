//! The console's web app: the files `npm run build` wrote (`console/web/dist`), served
//! from the folder the process is told about. Nothing loads from elsewhere.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use ops::problem::Problem;
use tower_http::services::ServeDir;

/// Routes for `/console` (its `index.html`) and `/console/…` (the files of `dir`).
/// When `dir` holds no `index.html` (the web app was not built), those routes answer a
/// 503 problem document saying how to build it, and the JSON routes still work.
pub fn assets<S: Clone + Send + Sync + 'static>(dir: &Path) -> Router<S> {
    if dir.join("index.html").is_file() {
        Router::new().nest_service("/console", ServeDir::new(dir))
    } else {
        tracing::warn!(dir = %dir.display(), "console web app not built: /console answers 503");
        let missing = dir.to_path_buf();
        let answer = get(move || not_built(missing.clone()));
        Router::new()
            .route("/console", answer.clone())
            .route("/console/", answer.clone())
            .route("/console/{*file}", answer)
    }
}

async fn not_built(dir: PathBuf) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "console.not_built",
        "Console not built",
        format!(
            "the console's web app is not in {}; `cargo xtask up` builds it (npm)",
            dir.display()
        ),
    )
}
