-- Record that attempt ARGV[3] claimed run ARGV[2] (the worker, right after its
-- claim): 1, or 0 when a later attempt already had.
return superseded(ARGV[2], ARGV[3] .. '-') and 0 or 1
