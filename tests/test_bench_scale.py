"""bench/scale.py's accounting: what it calls lost and duplicated, how it
spreads sessions over channels, and when it refuses a run the open-files
limit cannot hold. No benchmark runs here."""

from bench import scale


def test_lost_is_what_was_published_on_a_channel_minus_the_distinct_received():
    published = {("shared", 1): 10, ("shared", 2): 4, ("account", 7): 3}
    sessions = [
        [(("account", 7), 3, 0), (("shared", 1), 10, 0), (("shared", 2), 4, 0)],  # all of it
        [(("account", 8), 0, 0), (("shared", 1), 8, 0), (("shared", 2), 4, 2)],  # 2 lost, 2 twice
    ]
    assert scale.account_deliveries(sessions, published) == {
        "owed": 3 + 10 + 4 + 0 + 10 + 4, "received_distinct": 29, "lost": 2, "duplicated": 2}


def test_repeats_do_not_make_up_for_losses():
    published = {("shared", 1): 10}
    counted = scale.account_deliveries([[(("shared", 1), 9, 1)]], published)
    assert (counted["lost"], counted["duplicated"]) == (1, 1)


def test_a_generators_report_is_read_back_by_session_and_channel():
    text = "\n".join([
        "opened 2", "failed 0", "deliveries 7", "max_latency_us 900", "close 1011 1",
        "second 0 7 900", "latency 10 5", "latency 890 2", "rtt 100 1",
        "session 3 2 -1:1:0 5:3:1 505:2:0", "session 4 1 -1:0:0 6:1:0 506:0:0"])
    counts, histograms, closes, sessions = scale.parse_report(text)
    assert counts == {"opened": 2, "failed": 0, "deliveries": 7, "max_latency_us": 900}
    assert histograms["latency"] == {10: 5, 890: 2} and histograms["rtt"] == {100: 1}
    assert histograms["seconds"] == {0: (7, 900)}
    assert closes == {1011: 1}
    assert sessions == [
        (2, [(("account", 3), 1, 0), (("shared", 5), 3, 1), (("shared", 505), 2, 0)]),
        (1, [(("account", 4), 0, 0), (("shared", 6), 1, 0), (("shared", 506), 0, 0)])]


def test_percentiles_come_from_the_histogram():
    histogram = {10: 98, 500: 1, 20000: 1}
    assert scale.percentile(histogram, 0.5) == 10
    assert scale.percentile(histogram, 0.99) == 500
    assert scale.percentile(histogram, 1.0) == 20000
    assert scale.percentile({}, 0.5) is None


def test_every_session_has_distinct_channels_and_every_channel_an_equal_share():
    for session in range(5000):
        assert len(set(scale.channels_of(session, 1000, 2))) == 2
    assert set(scale.subscribers(100000, 1000, 2)) == {200}


def test_a_run_over_the_open_files_limit_is_refused_with_why():
    refusal = scale.fd_check(100000, 1, 6, 20000)
    assert "over its open-files limit of 20000" in refusal
    assert "at least 6 processes" in refusal
    assert scale.fd_check(100000, 6, 6, 20000) is None
    assert scale.fd_check(19000, 1, 2, 20000) is None
    assert "ephemeral ports" in scale.fd_check(60000, 6, 2, 20000)
