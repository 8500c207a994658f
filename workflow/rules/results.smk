# The end of each chain: a summary inside the run folder, published under results/.
# The summary's name carries the length, so raising an experiment's length asks for a new one,
# which walks the chain on from its last segment.


localrules:
    finalize,
    publish,
    curves,
    timeline,
    summary,


rule finalize:
    input:
        last_segment,
    output:
        FINAL_PATTERN,
    log:
        FINALIZE_LOG_PATTERN,
    wildcard_constraints:
        length="[0-9]+",
    conda:
        "../envs/batcher.yaml"
    script:
        "../scripts/finalize.py"


rule publish:
    input:
        lambda wildcards: str(
            run_layout(wildcards.exp).final_summary(EXPERIMENTS[wildcards.exp].length)
        ),
    output:
        summary=str(RESULT.summary),
        state=str(RESULT.state),
    log:
        str(RESULT.log("publish")),
    conda:
        "../envs/batcher.yaml"
    script:
        "../scripts/publish.py"


rule curves:
    input:
        str(RESULT.summary),
    output:
        report(
            str(RESULT.curves),
            caption="../report/curves.rst",
            category="Curves",
            labels={"experiment": "{exp}"},
        ),
    log:
        str(RESULT.log("curves")),
    conda:
        "../envs/batcher.yaml"
    script:
        "../scripts/plot.py"


rule timeline:
    input:
        str(RESULT.summary),
    output:
        report(
            str(RESULT.timeline),
            caption="../report/timeline.rst",
            category="Timeline",
            labels={"experiment": "{exp}"},
        ),
    log:
        str(RESULT.log("timeline")),
    conda:
        "../envs/batcher.yaml"
    script:
        "../scripts/plot.py"


rule summary:
    input:
        expand(str(RESULT.summary), exp=EXPERIMENTS),
    output:
        plot=report(
            str(ResultsLayout.across("summary.png")),
            caption="../report/summary.rst",
            category="Summary",
        ),
        table=report(
            str(ResultsLayout.across("summary.tsv")),
            caption="../report/table.rst",
            category="Summary",
        ),
    log:
        str(ResultsLayout.across("summary.log")),
    conda:
        "../envs/batcher.yaml"
    script:
        "../scripts/plot.py"
