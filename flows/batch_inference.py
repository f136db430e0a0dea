"""Score the data at a lakeFS ref with the champion and write the predictions back to lakeFS."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.context import FlowContext, step
from flows.reports import publish_artifact, publish_table
from lakeloop import events
from lakeloop.adapters import prefect_events
from lakeloop.outcomes import InferenceOutcome
from tasks.data import dataset
from tasks.data.profiling import to_bytes
from tasks.serving.action_list import action_list, action_markdown
from tasks.serving.inference import predict_batch, predictions_path, profile_predictions, write_predictions

PREDICTIONS_BRANCH = "predictions"

score = step("score-with-champion", predict_batch)


@flow(name="batch-inference", log_prints=True, persist_result=True)
def batch_inference(repository: str, ref: str = "main", model_alias: str = "champion") -> InferenceOutcome:
    """Predictions go to the `predictions` branch, so they never look like new training data on main."""
    log = get_run_logger()
    ctx = FlowContext.load(repository)
    data_commit = ctx.lake.head(ref)
    data, _ = dataset.training_set(ctx.lake, ctx.spec, data_commit, ctx.object_states)
    preds = score(data, f"models:/{ctx.model_name}@{model_alias}", id_column=ctx.spec.id_column)
    version = str(preds.get_column("model_version")[0])

    ctx.lake.ensure_branch(PREDICTIONS_BRANCH, data_commit)
    profile_path = predictions_path(data_commit).removesuffix(".parquet") + ".profile.bin"
    ctx.lake.write_bytes(PREDICTIONS_BRANCH, profile_path, to_bytes(profile_predictions(preds)))
    commit = write_predictions(ctx.lake, PREDICTIONS_BRANCH, preds, version, data_commit, model_name=ctx.model_name)
    log.info("%d predictions by %s v%s for %s → %s", preds.height, ctx.model_name, version, data_commit[:12],
             commit[:12])
    publish_artifact("predictions", f"## {preds.height} predictions by `{ctx.model_name}` v{version}\n\n"
            f"Data [`{data_commit[:12]}`]({ctx.commit_url(data_commit)}) → predictions "
            f"[`{commit[:12]}`]({ctx.commit_url(commit)}) at `{predictions_path(data_commit)}`.\n")
    actions = action_list(data, preds, ctx.spec, model_version=version, data_commit=data_commit)
    publish_table("worth-acting-on", actions.top,
                  action_markdown(actions, f"[`{data_commit[:12]}`]({ctx.commit_url(data_commit)})"))
    prefect_events.emit_durable(events.INFERENCE_COMPLETED, events.dataset_resource(ctx.settings.lakefs.repository),
                        {"repository": ctx.settings.lakefs.repository, "ref": data_commit, "commit_id": commit,
                         "model_name": ctx.model_name, "version": version, "rows": preds.height})
    return InferenceOutcome(data_commit=data_commit, predictions_commit=commit, model_version=version,
                            rows=preds.height)
