# The query cURL example of API Mall's Sora2 page (shared/seeds), verbatim.
# The test swaps only the base URL, YOUR_API_KEY and the example task id.
curl --request GET 'https://gateway.apimall.ai/api/v1/videos/vid_01HQ9MA3M6V6HC6S5R9V7N4Q4D' \
  --header 'Authorization: Bearer YOUR_API_KEY'
