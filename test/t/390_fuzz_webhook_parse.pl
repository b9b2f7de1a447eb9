# A short libFuzzer run over the webhook payload parser (src/webhook_parse.c):
# no crash, leak or sanitizer report in 5 s.  test/fuzz/README.md runs longer.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;

my $clang = `command -v clang-14 || command -v clang`;
chomp $clang;
plan skip_all => 'clang with libFuzzer is not installed' unless $clang;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $src = '.';
my $bin = "$tmp/fuzz_webhook";
my ($out, $err) = ('', '');
ok(IPC::Run::run([ $clang, '-g', '-O1', '-fsanitize=fuzzer,address,undefined',
	'-fno-sanitize-recover=undefined', "-I$src/src", "$src/test/fuzz/fuzz_webhook_parse.c",
	"$src/src/webhook_parse.c", '-ljson-c', '-o', $bin ], '>', \$out, '2>', \$err),
	'the fuzz target builds outside the backend') or diag($err);

mkdir("$tmp/corpus");
my $ok = IPC::Run::run([ $bin, '-max_total_time=5', '-max_len=65536', '-timeout=10',
	"-dict=$src/test/fuzz/json.dict", "-artifact_prefix=$tmp/", "$tmp/corpus",
	"$src/test/fuzz/corpus" ], '>', \$out, '2>', \$err);
ok($ok, 'the parser survives 5 s of libFuzzer') or diag(substr($err, -3000));
like($err, qr/Done \d+ runs/, 'the run completed');
done_testing();
