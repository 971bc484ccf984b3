//! Every message delivered again (a new consumer group reads from offset 0) changes
//! nothing: the checkpoints recognise each event as applied already.

use projections::Projection;

use crate::support::{Harness, RunningProjector, dump_read_model, write_sample};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_events_leave_the_read_model_untouched() {
    let harness = Harness::start(2).await;
    write_sample(&harness).await;
    let counts = harness.event_counts().await;
    assert_eq!(
        (counts.order, counts.inventory, counts.payment),
        (11, 3, 2),
        "events written"
    );

    let first = harness.projector_settings(20);
    let mut projectors = Vec::new();
    for projection in Projection::ALL {
        projectors.push(harness.start_projector(projection, &first).await);
    }
    for projector in &mut projectors {
        let expected = counts.read_by(projector.projection);
        projector.wait_for_applied(expected).await;
    }
    for projector in projectors {
        let projection = projector.projection;
        let progress = projector.stop().await;
        assert_eq!(
            (progress.applied, progress.duplicates, progress.gaps),
            (counts.read_by(projection), 0, 0),
            "{projection}, first delivery: {progress:?}"
        );
    }
    let before = dump_read_model(&harness.read_model).await;

    // Same projections, same read model, new consumer groups: every message again.
    let second = harness.projector_settings(20);
    assert_ne!(first.group_prefix, second.group_prefix);
    let mut projectors: Vec<RunningProjector> = Vec::new();
    for projection in Projection::ALL {
        projectors.push(harness.start_projector(projection, &second).await);
    }
    for projector in &mut projectors {
        let expected = counts.read_by(projector.projection);
        projector
            .wait_for(&format!("{expected} redeliveries skipped"), |p| {
                p.duplicates >= expected
            })
            .await;
    }
    for projector in projectors {
        let projection = projector.projection;
        let progress = projector.stop().await;
        assert_eq!(
            (
                progress.applied,
                progress.duplicates,
                progress.gaps,
                progress.dead_lettered
            ),
            (0, counts.read_by(projection), 0, 0),
            "{projection}: redelivery must only skip; {progress:?}"
        );
    }
    let after = dump_read_model(&harness.read_model).await;
    assert_eq!(before, after, "the read model changed on redelivery");
    harness.finish().await;
}
